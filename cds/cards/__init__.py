"""Findings -> CDS Hooks cards (docs/clinical.md, what a card says). Pure: no I/O, no clock; uuids derive from the
hookInstance and the rule, so the same request gives the same response. The words, codes and kinds of suggestion
come from the rule that fired (rules/<recommendation>/rule.yaml); Python builds each kind of suggestion.

- `context`: what the cards of a call are built from (`CardContext`) and the parameters as card text writes them
- `build`: the findings grouped one card each, and the cards assembled (`build_cards`)
- `words`: the rule's templates filled in, and the phrases card text is made of
- `lines`: the data lines behind a card, the notes of the patient's conditions, one line per matched fact
- `drafts/`: the FHIR resources a card suggests (`resources`, `layout`) and the suggestion builders (`suggestions`)
- `uuids`: card and suggestion uuids
"""

from cds.cards.build import build_cards, build_silent_cards, card_groups
from cds.cards.context import CardContext
from cds.cards.uuids import card_uuid

__all__ = ["CardContext", "build_cards", "build_silent_cards", "card_groups", "card_uuid"]
