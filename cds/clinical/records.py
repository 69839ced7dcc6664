"""Clinical records: the patient's data after FHIR hygiene, as plain values (no I/O, no FHIR library)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, NamedTuple

# What an order, a goal or a condition is to the rules (rules/statuses.yaml): the situation now, or the past.
CURRENT, HISTORY, DRAFT = "current", "history", "draft"

# Why a resource was set aside, in a few words: the card counts set-aside items by these categories.
STATUS_NOT_FINAL = "status not final"
DATED_IN_FUTURE = "dated in the future"
NO_DATE = "no date"
NO_VALUE = "no value"
UNIT_NOT_UNDERSTOOD = "unit not understood"
IMPLAUSIBLE = "implausible value"
INCOMPLETE_PANEL = "incomplete panel"
LONGER_THAN_A_DAY = "period longer than a day"
NOT_ACTIVE = "not active"
REFUTED = "refuted"
DEVICE_NOT_WORN = "device worn too little"
STATUS_UNKNOWN = "status not understood"  # a status code rules/statuses.yaml does not list
# Not readings set aside, and not counted on the card: listed in the trace only.
IGNORED = "ignored"  # a status that means "as if never recorded" (entered in error, cancelled, ...)
REASONS = (STATUS_NOT_FINAL, DATED_IN_FUTURE, NO_DATE, NO_VALUE, UNIT_NOT_UNDERSTOOD, IMPLAUSIBLE, INCOMPLETE_PANEL,
           LONGER_THAN_A_DAY, NOT_ACTIVE, REFUTED, DEVICE_NOT_WORN, STATUS_UNKNOWN, IGNORED)
TRACE_ONLY = frozenset({NOT_ACTIVE, REFUTED, IGNORED})


class Reading(NamedTuple):
    """One reading as used: its moment, its value in the unit the rules use, and where it came from. A named
    tuple: a 90-day chart has hundreds, and a frozen dataclass took twice as long to create (1.44 against
    0.76 us)."""

    when: datetime
    value: float
    source: str  # Type/id, for the card's data lines


@dataclass(frozen=True)
class SetAside:
    """A resource (or a day of steps) not used, with the detail for the trace and a category for the card."""

    source: str  # Type/id
    why: str  # the detail, e.g. "unit 'K' not understood for a temperature"
    reason: str  # one of REASONS

    def __post_init__(self) -> None:
        if self.reason not in REASONS:
            raise ValueError(f"unknown set-aside reason {self.reason!r}")


@dataclass(frozen=True)
class BloodPressure:
    when: datetime
    systolic: float | None
    diastolic: float | None
    source: str
    confirmed: bool = True  # False for a preliminary reading


@dataclass(frozen=True)
class ConditionRecord:
    code: str
    value_sets: dict[str, str]  # value set id -> the condition's code in it
    chronic_pain: bool  # a current condition of the eligibility value set
    recorded: datetime | None
    reference: str
    history: frozenset[str] = frozenset()  # the value sets in which it counts only as the past (it is over)

    def clinical(self, value_set: str) -> str:
        """current or history, in one of its value sets."""
        return HISTORY if value_set in self.history else CURRENT


@dataclass(frozen=True)
class Dose:
    """An exercise dose: minutes per session x sessions per week."""

    minutes: int
    per_week: int

    @property
    def weekly(self) -> int:
        return self.minutes * self.per_week

    def words(self) -> str:
        return f"{self.minutes} min x {self.per_week}/week"


@dataclass(frozen=True)
class OrderRecord:
    reference: str
    status: str  # current or history (rules/statuses.yaml), or draft (an order hook's draft)
    authored: datetime | None
    dose: Dose | None
    resource: dict[str, Any]
    start: datetime | None = None  # occurrenceTiming.repeat.boundsPeriod.start, else authoredOn


@dataclass(frozen=True)
class StepGoal:
    reference: str
    steps_per_day: float | None  # None: a step goal in force whose quota cannot be read
    resource: dict[str, Any]
    start: datetime | None = None  # startDate, else statusDate


@dataclass(frozen=True)
class MinuteGoal:
    """An active Goal whose target is minutes of activity a week (the PA IG's 82290-8 target)."""

    reference: str
    weekly_minutes: float


@dataclass(frozen=True)
class Eligibility:
    """Whether the patient is one the pacing rules are for, and why not when not."""

    eligible: bool
    reason: str  # e.g. "adult with an active chronic-pain condition (Condition/c1)", "younger than 18 years"
    age_assumed: bool = False  # no birth date: evaluated as an adult, and the cards say so


@dataclass
class PatientRecord:
    """What the rules need to know of one patient, cleaned."""

    patient_id: str
    pain: list[Reading] = field(default_factory=list)  # NRS 0-10
    peg: list[Reading] = field(default_factory=list)  # PEG mean 0-10
    steps: dict[date, Reading] = field(default_factory=dict)  # one per day: the largest source's day total
    sessions: list[Reading] = field(default_factory=list)  # minutes per session
    untimed_sessions: list[Reading] = field(default_factory=list)  # sessions recorded without a duration (value 0)
    evs_minutes: list[Reading] = field(default_factory=list)  # min/week
    blood_pressure: list[BloodPressure] = field(default_factory=list)
    temperature: list[Reading] = field(default_factory=list)  # Cel
    temperature_unconfirmed: list[Reading] = field(default_factory=list)  # Cel, preliminary readings
    weight: list[Reading] = field(default_factory=list)  # kg
    conditions: list[ConditionRecord] = field(default_factory=list)
    orders: list[OrderRecord] = field(default_factory=list)  # current and past exercise orders
    step_goal: StepGoal | None = None
    minute_goal: MinuteGoal | None = None
    birth_date: date | None = None
    language: str | None = None  # BCP-47, Patient.communication: the preferred one, else the first
    language_text: str | None = None  # a language given only as text that names none we read (cut, no markup)
    pain_orders: list[str] = field(default_factory=list)  # exercise orders whose reason is chronic pain
    weight_goals: list[str] = field(default_factory=list)  # active weight-management Goals (Goal/id)
    set_aside: list[SetAside] = field(default_factory=list)
    # The same measurement carried again (another Observation, same value, moment and source): counted once, and
    # listed in the trace. Not compared: where a copy is noticed depends on how it was read, not on what it says.
    duplicates: list[str] = field(default_factory=list, compare=False)

    @property
    def skipped(self) -> list[str]:
        """The set-aside items as the trace prints them: "Observation/x: why"; then the copies counted once."""
        return [f"{item.source}: {item.why}" for item in self.set_aside] + self.duplicates

    def set_aside_counts(self) -> list[tuple[str, int]]:
        """(reason, count) of the set-aside items, most frequent first, ties by reason."""
        counts = Counter(item.reason for item in self.set_aside)
        return sorted(counts.items(), key=lambda pair: (-pair[1], pair[0]))

    def readings_set_aside(self) -> list[tuple[str, int]]:
        """(reason, count) of the readings set aside that the card reports (not the trace-only reasons; Conditions
        that do not count are no readings)."""
        counts = Counter(item.reason for item in self.set_aside
                         if item.reason not in TRACE_ONLY and not item.source.startswith("Condition/"))
        return sorted(counts.items(), key=lambda pair: (-pair[1], pair[0]))

    @property
    def current_order(self) -> OrderRecord | None:
        """The order in force: the latest authored current one (ties: the later start, then the larger dose)."""
        current = [o for o in self.orders if o.status == CURRENT]
        return max(current, key=_order_key, default=None)

    @property
    def past_orders(self) -> list[OrderRecord]:
        """Orders that are over, newest first."""
        return sorted((o for o in self.orders if o.status == HISTORY), key=_order_key, reverse=True)

    @property
    def chronic_pain_condition(self) -> str | None:
        return next((c.reference for c in self.conditions if c.chronic_pain), None)


_EARLIEST = datetime.min.replace(tzinfo=UTC)


def _order_key(order: OrderRecord) -> tuple[datetime, datetime, int, str]:
    """Orders in time order, whatever order the EHR listed them in: authored, then start, then the weekly dose."""
    return (order.authored or _EARLIEST, order.start or _EARLIEST, order.dose.weekly if order.dose else -1,
            order.reference)


def _age(born: date, today: date) -> int:
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


def eligibility(record: PatientRecord, today: date, min_age: float, draft_for_pain: bool = False,
                conditions_unread: bool = False) -> Eligibility:
    """The pacing rules are for adults with chronic pain: an age of min_age or more from the birth date, and an
    active chronic-pain condition or an active exercise prescription (or, at an order hook, a draft) for pain.
    Without a birth date (US Core allows none) the patient is taken for an adult, and the cards say so. When the
    Conditions could not be read, no condition found means nothing: the patient is taken as in scope, so that the
    cards say what could not be read (and so could not be checked, red flags among it) instead of saying nothing."""
    assumed = record.birth_date is None
    if not assumed and _age(record.birth_date, today) < min_age:  # type: ignore[arg-type]
        return Eligibility(False, f"younger than {min_age:g} years: out of scope")
    who = "a patient with no birth date, taken for an adult," if assumed else "adult"
    condition = record.chronic_pain_condition
    if condition is not None:
        return Eligibility(True, f"{who} with an active chronic-pain condition ({condition})", assumed)
    if record.pain_orders or draft_for_pain:
        return Eligibility(True, f"{who} with an active exercise prescription for pain", assumed)
    if conditions_unread:
        return Eligibility(True, f"{who} whose conditions could not be read: taken as in scope, so that the cards "
                                 f"say what could not be checked", assumed)
    return Eligibility(False, "no active chronic-pain condition and no exercise prescription for pain", assumed)

