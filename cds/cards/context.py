"""What a call's cards are built from besides the findings (`CardContext`), and the parameters as card text writes
them (`Number`). The other modules of cds/cards/ import it; it imports none of them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType
from typing import Any

from cds.clinical.features import Features
from cds.clinical.orders import OrderReview
from cds.clinical.recommend import Recommendation
from cds.clinical.records import PatientRecord
from cds.engine import Fired, Knowledge
from cds.knowledge.patient_text import Catalogue, Choice


class Number(float):
    """A parameter in card text: plain ("38", "0.8") without a format spec, and formatted with one ("{:.0%}")."""

    def __format__(self, spec: str) -> str:
        return format(float(self), spec) if spec else f"{float(self):g}"


@dataclass
class CardContext:
    """What the card builder needs besides the findings."""

    hook_instance: str
    service_id: str
    hook: str
    patient_id: str
    knowledge: Knowledge
    features: Features
    record: PatientRecord
    params: Mapping[str, float]
    recommendation: Recommendation | None = None
    reviews: dict[str, OrderReview] = field(default_factory=dict)
    drafts: dict[str, dict[str, Any]] = field(default_factory=dict)  # Type/id -> draft resource
    groups: dict[str, list[Fired]] = field(default_factory=dict)  # first finding's rule id -> its card's findings
    facts: list[dict[str, Any]] = field(default_factory=list)  # the facts the rules were given
    rules_url: str | None = None  # the rules page; a card's source links to its rule there
    user_id: str | None = None  # the hook's context.userId ("Practitioner/123"); the panel worklist has none
    data: str | None = None  # the data lines behind the cards, the same for every card of the call: made once

    @cached_property
    def patient_language(self) -> Choice:
        """The words the patient reads (the draft order's instruction, the Goal's text) are written from: the
        record's language where we have it, else English, and why."""
        return self.knowledge.patient.choose(self.record.language)

    @property
    def patient_words(self) -> Catalogue:
        return self.patient_language.catalogue

    def findings_of(self, first: Fired) -> list[Fired]:
        return self.groups.get(first.rule_id + (first.subject or ""), [first])

    @cached_property
    def numbers(self) -> Mapping[str, Number]:
        """The parameters as card text writes them: built once per rule set when they are its values, else once
        per call."""
        if self.params is self.knowledge.values:
            return self.knowledge.derived("card numbers", _numbers)
        return _numbers_of(self.params)


def _numbers_of(params: Mapping[str, float]) -> Mapping[str, Number]:
    return MappingProxyType({name: Number(value) for name, value in params.items()})


def _numbers(knowledge: Knowledge) -> Mapping[str, Number]:
    return _numbers_of(knowledge.values)
