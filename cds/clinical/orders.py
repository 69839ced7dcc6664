"""Order review (docs/clinical.md, order review): a draft exercise order against the pacing plan. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cds.clinical import dose as dosing
from cds.clinical.features import Features
from cds.clinical.records import Dose, OrderRecord, PatientRecord


@dataclass(frozen=True)
class OrderReview:
    order: OrderRecord
    tolerated_weekly: float | None
    paced: Dose | None

    @property
    def proposed(self) -> Dose | None:
        return self.order.dose

    def fact(self, has_tolerance_data: bool) -> dict[str, Any]:
        fact: dict[str, Any] = {"t": "order", "ref": self.order.reference, "has_tolerance_data": has_tolerance_data}
        if self.proposed is not None and self.tolerated_weekly:
            fact["jump"] = round(self.proposed.weekly / self.tolerated_weekly - 1, 4)
        return fact


def has_tolerance_data(record: PatientRecord) -> bool:
    return bool(record.sessions or record.steps or record.pain or record.peg or record.evs_minutes or record.orders)


def review(draft: OrderRecord, f: Features, params: Mapping[str, float]) -> OrderReview:
    """The weekly minutes the patient tolerates (the plan, else the baseline, else the last week's minutes) and
    the paced dose: one progression step above the plan, or that weekly dose at the draft's sessions a week."""
    if f.plan is not None and f.plan_source != "starting dose":
        return OrderReview(draft, float(f.plan.weekly), dosing.progress(f.plan, params))
    tolerated: float | None = None
    if f.baseline_session_minutes is not None and f.baseline_sessions_per_week:
        tolerated = f.baseline_session_minutes * f.baseline_sessions_per_week
    elif f.weekly_minutes:
        tolerated = f.weekly_minutes
    paced = None
    if tolerated and draft.dose is not None:
        per_week = draft.dose.per_week
        paced = Dose(max(1, dosing.round_half_up(tolerated * (1 + params["progression_step"]) / per_week)), per_week)
    return OrderReview(draft, tolerated, paced)
