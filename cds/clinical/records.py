"""Clinical records: the patient's data after FHIR hygiene, as plain values (no I/O, no FHIR library)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

CURRENT_ORDER = {"active", "on-hold"}
PAST_ORDER = {"completed", "revoked"}


@dataclass(frozen=True)
class Reading:
    when: datetime
    value: float
    source: str  # Type/id, for the card's data lines


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
    chronic_pain: bool
    recorded: datetime | None
    reference: str


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
    status: str
    authored: datetime | None
    dose: Dose | None
    resource: dict[str, Any]
    start: datetime | None = None  # occurrenceTiming.repeat.boundsPeriod.start, else authoredOn


@dataclass(frozen=True)
class StepGoal:
    reference: str
    steps_per_day: float
    resource: dict[str, Any]
    start: datetime | None = None  # startDate, else statusDate


@dataclass
class PatientRecord:
    """What the rules need to know of one patient, cleaned."""

    patient_id: str
    pain: list[Reading] = field(default_factory=list)  # NRS 0-10
    peg: list[Reading] = field(default_factory=list)  # PEG mean 0-10
    steps: dict[date, Reading] = field(default_factory=dict)  # one per day, the latest final value
    sessions: list[Reading] = field(default_factory=list)  # minutes per session
    evs_minutes: list[Reading] = field(default_factory=list)  # min/week
    blood_pressure: list[BloodPressure] = field(default_factory=list)
    temperature: list[Reading] = field(default_factory=list)  # Cel
    temperature_unconfirmed: list[Reading] = field(default_factory=list)  # Cel, preliminary readings
    weight: list[Reading] = field(default_factory=list)  # kg
    conditions: list[ConditionRecord] = field(default_factory=list)
    orders: list[OrderRecord] = field(default_factory=list)  # current and past exercise orders
    step_goal: StepGoal | None = None
    weight_goals: list[str] = field(default_factory=list)  # active weight-management Goals (Goal/id)
    skipped: list[str] = field(default_factory=list)

    @property
    def current_order(self) -> OrderRecord | None:
        current = [o for o in self.orders if o.status in CURRENT_ORDER]
        return max(current, key=_authored, default=None)

    @property
    def past_orders(self) -> list[OrderRecord]:
        return sorted((o for o in self.orders if o.status in PAST_ORDER), key=_authored, reverse=True)

    @property
    def chronic_pain_condition(self) -> str | None:
        return next((c.reference for c in self.conditions if c.chronic_pain), None)


def _authored(order: OrderRecord) -> datetime:
    return order.authored or datetime.min.replace(tzinfo=UTC)
