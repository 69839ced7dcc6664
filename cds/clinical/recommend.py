"""From a recommendation code and the features to the dose it proposes, in numbers and words. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from cds.clinical import dose as dosing
from cds.clinical.features import Features
from cds.clinical.records import Dose


@dataclass(frozen=True)
class Recommendation:
    code: str
    dose: Dose | None = None  # minutes measure
    quota: int | None = None  # steps measure
    change: str | None = None
    reason: str | None = None

    def words(self, features: Features) -> str:
        if self.dose is not None:
            return self.dose.words()
        if self.quota is not None:
            return f"{self.quota:,} steps/day"
        return current_words(features)


def current_words(features: Features) -> str:
    if features.measure == "steps":
        return f"{round(features.quota):,} steps/day" if features.quota else "the current activity"
    return features.plan.words() if features.plan else "the current dose"


def recommend(code: str, f: Features, params: Mapping[str, float]) -> Recommendation:
    """The dose that goes with a dose recommendation code (None where the code changes no dose)."""
    if code == "start":
        if f.measure == "steps" and f.start_quota is not None:
            return Recommendation(code, quota=f.start_quota)
        return Recommendation(code, dose=f.start)
    if code == "progress":
        if f.measure == "steps" and f.quota:
            quota = dosing.progress_quota(f.quota, params)
            return Recommendation(code, quota=quota, change=dosing.percent_change(f.quota, quota))
        if f.plan is not None:
            new = dosing.progress(f.plan, params)
            return Recommendation(code, dose=new, change=dosing.percent_change(f.plan.weekly, new.weekly))
    if code == "step-back":
        if f.measure == "steps" and f.quota:
            quota = dosing.step_back_quota(f.quota, params)
            return Recommendation(code, quota=quota, change=dosing.percent_change(f.quota, quota))
        if f.plan is not None:
            new = dosing.step_back(f.plan, f.tolerated, params)
            return Recommendation(code, dose=new, change=dosing.percent_change(f.plan.weekly, new.weekly))
    if code == "hold":
        reasons = []
        if f.pain_delta is not None and f.pain_delta >= params["hold_pain_delta"] and not f.flare:
            reasons.append(f"pain up {f.pain_delta:.1f} points")
        if f.adherence is not None and f.adherence < params["adherence_min"]:
            reasons.append(f"{f.adherence:.0%} of the plan done")
        return Recommendation(code, reason=" and ".join(reasons) or "the week does not support a change")
    if code == "re-baseline":
        reasons = []
        if f.flare_weeks >= params["rebaseline_flare_weeks"]:
            reasons.append(f"{f.flare_weeks} flare weeks in the last 4")
        if f.planned_below_start:
            reasons.append("the planned dose is below the starting quota")
        return Recommendation(code, reason=" and ".join(reasons))
    return Recommendation(code)
