"""Exercise orders -> order records: a ServiceRequest for exercise, or a CarePlan's exercise activity, with its
standing (current or past, rules/statuses.yaml), when it started, whether its reason is chronic pain, and its dose
(minutes a session x sessions a week) from its timing or, failing that, from the instruction_dose patterns of
codes.yaml in its instructions. A written dose out of the plausible range is set aside with its reason."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cds.clinical.records import CURRENT, HISTORY, IMPLAUSIBLE, Dose, OrderRecord
from cds.fhir.readers.common import ICD10, MINUTES, SNOMED, Reader, codes_of, instruction_patterns, parse_time
from cds.knowledge import Knowledge

PER_WEEK = {"wk": 1.0, "d": 7.0, "mo": 12 / 52.1775, "a": 1 / 52.1775}
# The longest period of an order's timing, in its unit (a year a session is the rarest dose a plan could carry).
_PERIOD_MAX = 366


@dataclass(frozen=True)
class DoseLimits:
    """The plausible dose of an order (rules/parameters.yaml): at most this many sessions a week, each at most
    this many minutes long. A value outside is set aside, like an implausible reading, before any arithmetic."""

    sessions_per_week: float = 14
    session_minutes: float = 300

    @classmethod
    def of(cls, values: Mapping[str, float]) -> DoseLimits:
        return cls(values["order_sessions_max_per_week"], values["session_max_plausible_minutes"])


def order_dose(resource: dict[str, Any], patterns: list[re.Pattern[str]] | None = None,
               limits: DoseLimits = DoseLimits()) -> Dose | None:
    """Minutes per session x sessions per week from occurrenceTiming.repeat, else from the patientInstruction
    by the instruction_dose patterns of codes.yaml; None when neither gives a plausible dose."""
    return read_dose(resource, patterns or [], limits)[0]


def read_dose(resource: dict[str, Any], patterns: list[re.Pattern[str]],
              limits: DoseLimits) -> tuple[Dose | None, str | None]:
    """(the order's dose, why a written dose was set aside): each number is checked against the limits before it
    is multiplied, so no value, however large or small, costs more than a few operations."""
    timing = resource.get("occurrenceTiming")
    repeat = timing.get("repeat") if isinstance(timing, dict) else None
    if not isinstance(repeat, dict) or "duration" not in repeat:
        return _instruction_dose(resource.get("patientInstruction"), patterns, limits), None
    frequency, unit = repeat.get("frequency", 1), repeat.get("periodUnit")
    period, duration = _number(repeat.get("period", 1)), _number(repeat.get("duration"))
    duration_unit = repeat.get("durationUnit", "min")
    if (not isinstance(frequency, int) or isinstance(frequency, bool) or period is None
            or unit not in PER_WEEK or duration is None or duration_unit not in MINUTES):
        return None, None
    if not 0 < period <= _PERIOD_MAX:
        return None, f"period {_short(period)} {unit} is not plausible"
    if not 0 < frequency <= limits.sessions_per_week * _PERIOD_MAX:
        return None, f"frequency {_short(frequency)} is not plausible"
    sessions = frequency * PER_WEEK[unit] / period
    if sessions > limits.sessions_per_week + 0.5:
        return None, f"{_short(sessions)} sessions a week is not plausible"
    if not 0 <= duration <= limits.session_minutes * 60:  # the bound in the smallest unit, seconds
        return None, f"a session of {_short(duration)} {duration_unit} is not plausible"
    minutes = duration * MINUTES[duration_unit]
    if minutes > limits.session_minutes:
        return None, f"a session of {_short(minutes)} min is not plausible"
    per_week, whole = round(sessions), round(minutes)
    if per_week < 1 or whole < 1:
        return None, None
    return Dose(whole, per_week), None


def _number(value: Any) -> float | int | None:
    """A JSON number (not a boolean), else None."""
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _short(value: float) -> str:
    """A number for a set-aside line: a few significant digits whatever its size."""
    return f"{float(value):.4g}" if abs(value) < 1e300 else "a number too large to show"


def _instruction_dose(text: Any, patterns: list[re.Pattern[str]], limits: DoseLimits) -> Dose | None:
    if not isinstance(text, str):
        return None
    for pattern in patterns:
        match = pattern.search(text[:2000])
        if match:
            minutes, per_week = match.group("minutes"), match.group("per_week")
            if len(minutes) > 4 or len(per_week) > 4:  # digits, before any conversion
                return None
            if 1 <= int(minutes) <= limits.session_minutes and 1 <= int(per_week) <= limits.sessions_per_week:
                return Dose(int(minutes), int(per_week))
    return None


def _order_start(resource: dict[str, Any]) -> datetime | None:
    """When the dose started: occurrenceTiming.repeat.boundsPeriod.start, else occurrencePeriod.start."""
    timing = resource.get("occurrenceTiming")
    repeat = timing.get("repeat") if isinstance(timing, dict) else None
    bounds = repeat.get("boundsPeriod") if isinstance(repeat, dict) else None
    started = parse_time(bounds.get("start")) if isinstance(bounds, dict) else None
    if started is not None:
        return started
    period = resource.get("occurrencePeriod")
    return parse_time(period.get("start")) if isinstance(period, dict) else None


def for_pain(concepts: Any, knowledge: Knowledge) -> bool:
    """A list of reason CodeableConcepts with one in the eligibility value set (chronic pain)."""
    wanted = knowledge.codes.eligibility_value_set
    for concept in concepts if isinstance(concepts, list) else []:
        if wanted in knowledge.value_set_index.lookup(codes_of(concept, SNOMED), codes_of(concept, ICD10)):
            return True
    return False


class OrderTables:
    """What the order readers take from the knowledge, once per rule set (Knowledge.derived)."""

    def __init__(self, knowledge: Knowledge) -> None:
        codes = knowledge.codes
        self.exercise = frozenset(codes.exercise_orders)
        self.dose_patterns = instruction_patterns(tuple(codes.instruction_dose))
        self.dose_limits = DoseLimits.of(knowledge.values)


class OrderReader(Reader, OrderTables):
    """Reads exercise ServiceRequests and CarePlans into the record (a part of RecordBuilder)."""

    def order(self, resource: dict[str, Any]) -> None:
        reference = f"ServiceRequest/{resource.get('id', '?')}"
        if not set(codes_of(resource.get("code"), SNOMED)) & self.exercise:
            return
        meaning = self.in_force_or_past("service-request", resource.get("status"), reference)
        if meaning is None:
            return
        authored = parse_time(resource.get("authoredOn"))
        self.record.orders.append(OrderRecord(reference, meaning, authored, self._dose(resource, reference),
                                              resource, _order_start(resource) or authored))
        if meaning == CURRENT and for_pain(resource.get("reasonCode"), self.knowledge):
            self.record.pain_orders.append(reference)

    def _dose(self, resource: dict[str, Any], reference: str) -> Dose | None:
        """The order's dose; a written dose out of the plausible range is set aside with its reason."""
        dose, problem = read_dose(resource, self.dose_patterns, self.dose_limits)
        if problem is not None:
            self.skip(reference, f"dose set aside: {problem}", IMPLAUSIBLE)
        return dose

    def care_plan(self, resource: dict[str, Any]) -> None:
        """A CarePlan's exercise activities, read as exercise orders (a dose from scheduledTiming, else from the
        description): current while the plan and the activity are, the past when either is over."""
        reference = f"CarePlan/{resource.get('id', '?')}"
        plan = self.in_force_or_past("care-plan", resource.get("status"), reference)
        if plan is None:
            return
        period = resource.get("period")
        period = period if isinstance(period, dict) else {}
        started = parse_time(period.get("start")) or parse_time(resource.get("created"))
        for index, activity in enumerate(resource.get("activity") or []):
            detail = activity.get("detail") if isinstance(activity, dict) else None
            if not isinstance(detail, dict) or not set(codes_of(detail.get("code"), SNOMED)) & self.exercise:
                continue
            activity_ref = f"{reference}#activity-{index + 1}"
            meaning = self.status("care-plan-activity", detail.get("status"), activity_ref)
            if meaning not in (CURRENT, HISTORY):
                continue
            standing = CURRENT if plan == CURRENT and meaning == CURRENT else HISTORY
            shaped = {"occurrenceTiming": detail.get("scheduledTiming"),
                      "patientInstruction": detail.get("description")}
            self.record.orders.append(OrderRecord(activity_ref, standing, started,
                                                  self._dose(shaped, activity_ref), resource, started))
            if standing == CURRENT and for_pain(detail.get("reasonCode"), self.knowledge):
                self.record.pain_orders.append(activity_ref)
