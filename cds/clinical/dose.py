"""Dose arithmetic (docs/clinical.md, recommendations): starting quota, progression, step-back. Pure."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from cds.clinical.records import Dose

Params = Mapping[str, float]


def round_half_up(value: float) -> int:
    return math.floor(value + 0.5)


def round_steps(value: float) -> int:
    """Step quotas are whole hundreds."""
    return int(round_half_up(value / 100) * 100)


def start_dose(mean_session_minutes: float, sessions_per_week: int, params: Params) -> Dose:
    """baseline_fraction x the baseline's minutes per session, at the baseline's sessions per week."""
    minutes = max(1, round_half_up(mean_session_minutes * params["baseline_fraction"]))
    return Dose(minutes, max(1, sessions_per_week))


def start_quota(mean_daily_steps: float, params: Params) -> int:
    return max(100, round_steps(mean_daily_steps * params["baseline_fraction"]))


def progress(dose: Dose, params: Params) -> Dose:
    """Raise the weekly dose by progression_step; add a session while sessions would pass session_target_minutes
    (up to frequency_max a week), then lengthen sessions up to session_max_minutes; at least +1 minute.

    20 min x 3 (60) -> 66 -> 22 min x 3; 30 min x 3 (90) -> 99 -> 33 > 30, so 4 sessions -> 25 min x 4.
    """
    target = dose.weekly * (1 + params["progression_step"])
    per_week = dose.per_week
    if target / per_week > params["session_target_minutes"] and per_week < params["frequency_max"]:
        per_week += 1
        minutes = max(1, round_half_up(target / per_week))
        return Dose(minutes, per_week)
    minutes = max(dose.minutes + 1, round_half_up(target / per_week))
    return Dose(min(minutes, max(dose.minutes, int(params["session_max_minutes"]))), per_week)


def progress_quota(quota: float, params: Params) -> int:
    return max(round_steps(quota) + 100, round_steps(quota * (1 + params["progression_step"])))


def sessions_at_least(weekly: float, most: int, minutes: float) -> int:
    """The most sessions a week, up to `most`, that keep each of `weekly` minutes at least `minutes` long; one when
    even one would be shorter. Closed form: the cost is the same whatever the numbers."""
    if most <= 1 or minutes <= 0:
        return max(1, most)
    fits = math.floor(weekly / minutes) if weekly / minutes < most else most
    if fits >= 1 and weekly / fits < minutes:  # the floor of a rounded quotient can be one off either way
        fits -= 1
    elif fits < most and weekly / (fits + 1) >= minutes:
        fits += 1
    return max(1, min(most, fits))


def step_back(dose: Dose, done_weekly: float | None, tolerated: Sequence[Dose], params: Params) -> Dose:
    """step_back_fraction x the lowest of the planned weekly dose, the weekly dose done when below it, and the last
    well-tolerated weekly dose below it; the sessions a week are kept while each stays at least
    session_min_minutes long, else there are fewer sessions.

    120 planned, 15 done: 0.8 x 15 = 12 a week -> 3 sessions of 4 min are too short -> 6 min x 2.
    """
    candidates = [float(dose.weekly)]
    if done_weekly and done_weekly < dose.weekly:  # a week with nothing recorded says nothing of tolerance
        candidates.append(done_weekly)
    lower = [d.weekly for d in tolerated if d.weekly < dose.weekly]
    if lower:
        candidates.append(float(max(lower)))
    weekly = min(candidates) * params["step_back_fraction"]
    per_week = sessions_at_least(weekly, dose.per_week, params["session_min_minutes"])
    return Dose(max(1, round_half_up(weekly / per_week)), per_week)


def rebaseline(dose: Dose, done_weekly: float | None, params: Params) -> Dose | None:
    """baseline_fraction x the weekly dose actually done, at the plan's sessions a week while each stays at least
    session_min_minutes long; none when nothing was done (the tolerance assessment sets it then)."""
    if not done_weekly:
        return None
    weekly = min(done_weekly, dose.weekly) * params["baseline_fraction"]
    per_week = sessions_at_least(weekly, dose.per_week, params["session_min_minutes"])
    return Dose(max(1, round_half_up(weekly / per_week)), per_week)


def step_back_quota(quota: float, done_daily: float | None, params: Params) -> int:
    """step_back_fraction x the lower of the quota and the mean daily steps done."""
    base = min(quota, done_daily) if done_daily else quota
    return max(100, round_steps(base * params["step_back_fraction"]))


def percent_change(before: float, after: float) -> str:
    change = round_half_up((after / before - 1) * 100) if before else 0
    return f"{change:+d} %"
