"""Order review (docs/clinical.md, order review): a draft exercise order against the pacing plan. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from cds.clinical import dose as dosing
from cds.clinical.features import Features
from cds.clinical.records import Dose, OrderRecord, PatientRecord


@dataclass(frozen=True)
class OrderReview:
    order: OrderRecord
    tolerated_weekly: float | None
    paced: Dose | None
    planned_weekly: float | None = None  # the current plan's weekly minutes, when there is a plan
    step_back: Dose | None = None  # the step-back dose, during a flare

    @property
    def proposed(self) -> Dose | None:
        return self.order.dose

    def target(self, change: str | None) -> Dose | None:
        """The dose the draft should carry: the step-back dose when the rule steps back, else the paced dose."""
        return self.step_back if change == "step-back" and self.step_back is not None else self.paced

    def fact(self, has_activity_data: bool, features: Features | None = None) -> dict[str, Any]:
        fact: dict[str, Any] = {"t": "order", "ref": self.order.reference, "has_activity_data": has_activity_data,
                                "flare": bool(features and features.flare),
                                "dose_unread": self.proposed is None,
                                "at_or_above_plan": bool(self.proposed and self.planned_weekly
                                                         and self.proposed.weekly >= self.planned_weekly)}
        if self.proposed is not None:
            fact["weekly"] = self.proposed.weekly
        if self.proposed is not None and self.tolerated_weekly:
            fact["jump"] = round(self.proposed.weekly / self.tolerated_weekly - 1, 4)
        return fact


def has_activity_data(record: PatientRecord, now: datetime, params: Mapping[str, float]) -> bool:
    """Sessions, steps or an Exercise Vital Sign in the last history_days: what an order's dose is judged by."""
    since = now - timedelta(days=params["history_days"])
    readings = [*record.sessions, *record.steps.values(), *record.evs_minutes]
    return any(since < r.when <= now for r in readings)


def review(draft: OrderRecord, f: Features, params: Mapping[str, float]) -> OrderReview:
    """The weekly minutes the patient tolerates (the plan, else the baseline, else the last week's minutes) and
    the paced dose: one progression step above the plan, or that weekly dose at the draft's sessions a week;
    during a flare, the step-back dose."""
    reviewed = _review(draft, f, params)
    if f.flare and f.plan is not None:
        paced = dosing.step_back(f.plan, f.weekly_minutes, f.tolerated, params)
        return replace(reviewed, planned_weekly=float(f.plan.weekly), step_back=paced)
    return replace(reviewed, planned_weekly=float(f.plan.weekly) if f.plan is not None else None)


def _review(draft: OrderRecord, f: Features, params: Mapping[str, float]) -> OrderReview:
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
