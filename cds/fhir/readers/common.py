"""The small readers every resource family shares, and what a reader of any family does with what it reads.

- FHIR elements as plain values: a date, dateTime or instant as a moment in UTC (`parse_time`), the codes of a
  CodeableConcept (`codes_of`, `loinc_codes`), a Quantity's number and unit (`quantity_of`), the id a Reference
  points to (`reference_id`), and the units a quantity of time or steps may be written in;
- `Why` a value is set aside (the detail for the trace and its category), and `Reader`, the base of the reader of
  each family: the record it fills, the moment of evaluation, the statuses of rules/statuses.yaml, and a resource
  set aside with its reason, never guessed.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, NamedTuple, final

from cds.clinical.records import CURRENT, HISTORY, IGNORED, STATUS_UNKNOWN, PatientRecord, SetAside
from cds.knowledge import Knowledge

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
ICD10 = ("http://hl7.org/fhir/sid/icd-10-cm", "http://hl7.org/fhir/sid/icd-10")

# A value converted into the unit the rules use is rounded to this many decimals: the same quantity written in
# another UCUM unit (30 min as 0.5 h, 80 kg as 80000 g) gives the same number.
DECIMALS = 6
# The units of a quantity read by more than one family, each with its factor to the unit the rules use.
MINUTES = {"min": 1.0, "h": 60.0, "s": 1 / 60, "hour": 60.0, "minute": 1.0, "minutes": 1.0}
STEP_UNITS = {"/d", "{steps}", "{steps}/d", "1/d", "{step}", "steps", "steps/day", "{count}/d"}
WEEKLY_MINUTES = {"min/wk": 1.0, "min/(7.d)": 1.0, "min/week": 1.0}


def parse_time(value: Any) -> datetime | None:
    """A FHIR date, dateTime or instant as an aware datetime in UTC (no zone: UTC; a date: its midnight UTC). The
    same instant written with another UTC offset is the same moment, on the same day."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)  # Python 3.11 reads "Z", dates and date-times
    except ValueError:
        try:
            if re.fullmatch(r"\d{4}", value):
                parsed = datetime(int(value), 1, 1)
            elif re.fullmatch(r"\d{4}-\d{2}", value):
                parsed = datetime(int(value[:4]), int(value[5:7]), 1)
            else:
                return None
        except ValueError:
            return None
    zone = parsed.tzinfo
    if zone is None:
        return parsed.replace(tzinfo=UTC)
    return parsed if zone is UTC else parsed.astimezone(UTC)


def codes_of(concept: Any, system: str | tuple[str, ...] | None = None) -> list[str]:
    if not isinstance(concept, dict):
        return []
    systems = (system,) if isinstance(system, str) else system
    return [c["code"] for c in concept.get("coding") or [] if isinstance(c, dict) and isinstance(c.get("code"), str)
            and (systems is None or c.get("system") in systems)]


def loinc_codes(concept: Any) -> set[str]:
    """The LOINC codes of a CodeableConcept: codes_of(concept, LOINC) as a set."""
    codes: set[str] = set()
    if isinstance(concept, dict):
        for c in concept.get("coding") or []:
            if isinstance(c, dict) and c.get("system") == LOINC:
                code = c.get("code")
                if isinstance(code, str):
                    codes.add(code)
    return codes


def quantity_of(q: Any) -> tuple[float, str] | None:
    """A Quantity's number and unit (its code, else its unit, else ""); None unless it has a number (not a
    boolean)."""
    if not isinstance(q, dict):
        return None
    value = q.get("value")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    unit = q.get("code")
    if not isinstance(unit, str):
        unit = q.get("unit")
    return float(value), unit if isinstance(unit, str) else ""


def reference_id(reference: Any) -> str | None:
    """The id a reference points to: 'Observation/x', an absolute URL ending so, or 'urn:uuid:x'."""
    if not isinstance(reference, dict) or not isinstance(reference.get("reference"), str):
        return None
    text = reference["reference"].removeprefix("urn:uuid:")
    return text.rstrip("/").rsplit("/", 1)[-1] or None


@functools.lru_cache(maxsize=8)
def instruction_patterns(patterns: tuple[str, ...]) -> list[re.Pattern[str]]:
    """Patterns of codes.yaml (instruction_dose, goal_quota), compiled once."""
    return [re.compile(p, re.IGNORECASE) for p in patterns]


@final  # `type(x) is Why` then tells a Why from the value it stands in for, to the reader as to mypy
class Why(NamedTuple):
    """Why a value is set aside: the detail for the trace, and its category (one of records.REASONS)."""

    why: str
    reason: str


class Reader:
    """What the reader of every resource family shares, one per evaluation (cds/fhir/readers/builder.py): the
    record it fills, the moment of evaluation, and what each status code means (rules/statuses.yaml)."""

    knowledge: Knowledge
    record: PatientRecord
    now: datetime | None
    status_of: Callable[[str, str | None], str]

    def skip(self, source: str, why: str, reason: str) -> None:
        self.record.set_aside.append(SetAside(source, why, reason))

    def status(self, table: str, code: Any, source: str) -> str:
        """What a status means (rules/statuses.yaml); a code the table does not list is set aside and reported."""
        meaning = self.status_of(table, code if isinstance(code, str) else None)
        if meaning == "unknown":
            self.skip(source, f"{table} status {str(code)[:40]!r} is not one rules/statuses.yaml knows",
                      STATUS_UNKNOWN)
        return meaning

    def in_force_or_past(self, table: str, code: Any, source: str) -> str | None:
        """CURRENT or HISTORY for a status that counts; None for any other, which is set aside and reported (an
        unknown one by `status`, the rest as never recorded)."""
        meaning = self.status(table, code, source)
        if meaning in (CURRENT, HISTORY):
            return meaning
        if meaning != "unknown":
            self.skip(source, f"status {code!r}: as if never recorded", IGNORED)
        return None
