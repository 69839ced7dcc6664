"""From a dose recommendation and the features to the dose it proposes, in numbers and words. Pure."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from cds.clinical import dose as dosing
from cds.clinical.features import Features
from cds.clinical.records import Dose


@dataclass(frozen=True)
class Recommendation:
    code: str
    dose: Dose | None = None  # minutes measure
    quota: int | None = None  # steps measure
    change: str | None = None

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


def _start(f: Features, params: Mapping[str, float]) -> Recommendation:
    if f.measure == "steps" and f.start_quota is not None:
        return Recommendation("", quota=f.start_quota)
    return Recommendation("", dose=f.start)


def _progress(f: Features, params: Mapping[str, float]) -> Recommendation:
    if f.measure == "steps" and f.quota:
        quota = dosing.progress_quota(f.quota, params)
        return Recommendation("", quota=quota, change=dosing.percent_change(f.quota, quota))
    if f.plan is not None:
        new = dosing.progress(f.plan, params)
        return Recommendation("", dose=new, change=dosing.percent_change(f.plan.weekly, new.weekly))
    return Recommendation("")


def _step_back(f: Features, params: Mapping[str, float]) -> Recommendation:
    if f.measure == "steps" and f.quota:
        quota = dosing.step_back_quota(f.quota, f.mean_daily_steps, params)
        return Recommendation("", quota=quota, change=dosing.percent_change(f.quota, quota))
    if f.plan is not None:
        new = dosing.step_back(f.plan, f.weekly_minutes, f.tolerated, params)
        return Recommendation("", dose=new, change=dosing.percent_change(f.plan.weekly, new.weekly))
    return Recommendation("")


def _rebaseline(f: Features, params: Mapping[str, float]) -> Recommendation:
    if f.measure == "steps" and f.quota and f.mean_daily_steps:
        quota = dosing.start_quota(min(f.quota, f.mean_daily_steps), params)
        return Recommendation("", quota=quota, change=dosing.percent_change(f.quota, quota))
    new = dosing.rebaseline(f.plan, f.weekly_minutes, params) if f.plan is not None else None
    if f.plan is not None and new is not None:
        return Recommendation("", dose=new, change=dosing.percent_change(f.plan.weekly, new.weekly))
    return Recommendation("")


# The dose arithmetic a rule's `conclude.dose` names.
DOSE_CHANGES: dict[str, Callable[[Features, Mapping[str, float]], Recommendation]] = {
    "start": _start, "progress": _progress, "step-back": _step_back, "re-baseline": _rebaseline}


def recommend(code: str, change: str | None, f: Features, params: Mapping[str, float]) -> Recommendation:
    """The dose that goes with a dose recommendation: the arithmetic its rule names, or none (the dose stays)."""
    if change is None:
        return Recommendation(code)
    return replace(DOSE_CHANGES[change](f, params), code=code)
