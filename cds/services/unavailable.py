"""The card answered when the patient's record could not be read in time: red flags were not checked."""

from __future__ import annotations

from typing import Final

from cds.cards.uuids import card_uuid
from cds.engine import Knowledge
from cds.hooks.models import Card, Coding, Source

TOPIC = "data-unavailable"
INDICATOR: Final = "warning"


def data_unavailable_card(hook_instance: str, knowledge: Knowledge, deadline_s: float) -> Card:
    """A warning that no guidance was computed, so that silence is not read as "no red flags"."""
    info = knowledge.info
    return Card(
        uuid=card_uuid(hook_instance, TOPIC),
        summary="Pacing guidance unavailable: red flags not checked",
        detail=(f"The patient's record could not be read from the EHR's FHIR server within {deadline_s:g} s, "
                "so this service checked neither red flags nor the exercise dose. Review the record before "
                "progressing or ordering exercise."),
        indicator=INDICATOR,
        source=Source(label=f"{info.name} {knowledge.version}",
                      topic=Coding(system=info.code_system, code=TOPIC, display="Data unavailable")),
    )
