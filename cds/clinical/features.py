"""Derived features (docs/clinical.md), and the facts the rules read. Pure: `now` and parameters come in; every
window and count is a parameter of rules/parameters.yaml."""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Literal

from cds.clinical import dose as dosing
from cds.clinical.records import Dose, PatientRecord, Reading

Params = Mapping[str, float]
DAY = timedelta(days=1)
DAYS_PER_WEEK = 7


@dataclass
class Features:
    """Everything the rules, the dose arithmetic and the card text need, computed once."""

    now: datetime
    measure: Literal["minutes", "steps"]
    has_prescription: bool
    plan: Dose | None = None  # minutes measure: the planned dose (order, else starting dose)
    quota: float | None = None  # steps measure: the planned daily steps (goal, else starting quota)
    plan_source: str | None = None
    valid_days: int = 0
    baseline_session_minutes: float | None = None
    baseline_sessions_per_week: int | None = None
    baseline_daily_steps: float | None = None
    start: Dose | None = None
    start_quota: int | None = None
    weekly_minutes: float | None = None
    sessions_last7: int = 0
    mean_daily_steps: float | None = None
    step_days_last7: int = 0
    adherence: float | None = None
    pain_now: float | None = None
    pain_baseline: float | None = None
    pain_readings: tuple[int, int] = (0, 0)
    pain_scale: str = "NRS"
    pain_delta: float | None = None
    flare: bool = False
    flare_weeks: int = 0
    acwr: float | None = None
    boom_bust: bool = False
    inactive: bool = False
    inactive_reason: str | None = None
    days_since_activity: int | None = None
    days_since_pain: int | None = None
    planned_below_start: bool = False
    tolerated: list[Dose] = field(default_factory=list)  # earlier exercise orders' doses, newest first

    def patient_fact(self) -> dict[str, Any]:
        fact: dict[str, Any] = {
            "t": "patient", "has_prescription": self.has_prescription, "valid_days": self.valid_days,
            "flare": self.flare, "flare_weeks": self.flare_weeks, "planned_below_start": self.planned_below_start,
            "boom_bust": self.boom_bust, "inactive": self.inactive,
        }
        optional = {"days_since_activity": self.days_since_activity, "days_since_pain": self.days_since_pain,
                    "adherence": self.adherence, "pain_delta": self.pain_delta, "acwr": self.acwr,
                    "weekly_minutes": self.weekly_minutes, "mean_daily_steps": self.mean_daily_steps}
        fact.update({k: (round(v, 4) if isinstance(v, float) else v) for k, v in optional.items() if v is not None})
        return fact


def _between(readings: list[Reading], start: datetime, end: datetime) -> list[Reading]:
    """Readings with start < when <= end."""
    return [r for r in readings if start < r.when <= end]


def _median(readings: list[Reading], minimum: int) -> float | None:
    return statistics.median(r.value for r in readings) if len(readings) >= minimum else None


def daily_activity(record: PatientRecord, measure: str) -> dict[date, float]:
    """Activity per valid day: the day's steps, or the day's summed session minutes."""
    if measure == "steps":
        return {day: reading.value for day, reading in record.steps.items()}
    days: dict[date, float] = {}
    for session in record.sessions:
        days[session.when.date()] = days.get(session.when.date(), 0.0) + session.value
    return days


def compute(record: PatientRecord, now: datetime, params: Params) -> Features:
    order = record.current_order
    measure: Literal["minutes", "steps"] = "minutes"
    if not record.sessions and order is None and (record.steps or record.step_goal is not None):
        measure = "steps"
    has_prescription = order is not None if measure == "minutes" else record.step_goal is not None
    f = Features(now=now, measure=measure, has_prescription=has_prescription)
    f.tolerated = [o.dose for o in record.past_orders if o.dose is not None]
    days = daily_activity(record, measure)
    today = now.date()
    _baseline(f, record, days, params)
    _plan(f, record, params)
    _activity(f, record, days, today, params)
    _pain(f, record, now, params)
    _patterns(f, record, days, today, params)
    last_day = max((d for d in days if d <= today), default=None)
    f.days_since_activity = (today - last_day).days if last_day else None
    pain_times = [r.when for r in record.pain + record.peg if r.when <= now]
    f.days_since_pain = (today - max(pain_times).date()).days if pain_times else None
    return f


def _baseline(f: Features, record: PatientRecord, days: dict[date, float], params: Params) -> None:
    """Baseline tolerance from the days before the prescription (or before now when there is none)."""
    order = record.current_order
    end = order.authored if order is not None and order.authored is not None else f.now
    window = int(params["baseline_window_days"])
    start = end - window * DAY
    window_days = [d for d in days if start.date() < d <= end.date()]
    f.valid_days = len(window_days)
    if f.valid_days < params["baseline_min_days"]:
        return
    if f.measure == "steps":
        f.baseline_daily_steps = statistics.fmean(days[d] for d in window_days)
        f.start_quota = dosing.start_quota(f.baseline_daily_steps, params)
        return
    sessions = _between(record.sessions, start, end)
    if not sessions:
        return
    f.baseline_session_minutes = statistics.fmean(s.value for s in sessions)
    f.baseline_sessions_per_week = max(1, round(len(sessions) * DAYS_PER_WEEK / window))
    f.start = dosing.start_dose(f.baseline_session_minutes, f.baseline_sessions_per_week, params)


def _plan(f: Features, record: PatientRecord, params: Params) -> None:
    order = record.current_order
    if f.measure == "minutes":
        if order is not None and order.dose is not None:
            f.plan, f.plan_source = order.dose, order.reference
            f.planned_below_start = f.start is not None and order.dose.weekly < f.start.weekly
        elif f.start is not None:
            f.plan, f.plan_source = f.start, "starting dose"
        return
    if record.step_goal is not None:
        f.quota, f.plan_source = record.step_goal.steps_per_day, record.step_goal.reference
        f.planned_below_start = f.start_quota is not None and f.quota < f.start_quota
    elif f.start_quota is not None:
        f.quota, f.plan_source = float(f.start_quota), "starting quota"


def _activity(f: Features, record: PatientRecord, days: dict[date, float], today: date, params: Params) -> None:
    week, history = int(params["recent_days"]), int(params["history_days"])
    recent = _between(record.sessions, f.now - week * DAY, f.now)
    f.sessions_last7 = len(recent)
    if record.sessions:
        f.weekly_minutes = sum(s.value for s in recent)
    else:
        evs = _between(record.evs_minutes, f.now - history * DAY, f.now)
        f.weekly_minutes = max(evs, key=lambda r: r.when).value if evs else None
    step_days = [r.value for d, r in record.steps.items() if today - timedelta(days=week - 1) <= d <= today]
    f.step_days_last7 = len(step_days)
    f.mean_daily_steps = statistics.fmean(step_days) if step_days else None
    if f.measure == "minutes" and f.plan is not None and f.weekly_minutes is not None:
        f.adherence = f.weekly_minutes / f.plan.weekly
    elif f.measure == "steps" and f.quota and f.mean_daily_steps is not None:
        f.adherence = f.mean_daily_steps / f.quota
    acute = [v for d, v in days.items() if today - timedelta(days=week - 1) <= d <= today]
    chronic = [v for d, v in days.items() if today - timedelta(days=history - 1) <= d <= today]
    first = min(days, default=None)
    if first is not None and (today - first).days >= params["acwr_min_history_days"] - 1 and chronic:
        if f.measure == "steps":
            chronic_mean = statistics.fmean(chronic)
            f.acwr = statistics.fmean(acute) / chronic_mean if acute and chronic_mean else None
        else:
            span = min(history, (today - first).days + 1)
            chronic_mean = sum(chronic) / span
            f.acwr = (sum(acute) / week) / chronic_mean if chronic_mean else None


def _pain(f: Features, record: PatientRecord, now: datetime, params: Params) -> None:
    minimum = int(params["pain_min_readings"])
    days, history = int(params["recent_days"]), int(params["history_days"])
    week_start, history_start = now - days * DAY, now - history * DAY
    week, base = _between(record.pain, week_start, now), _between(record.pain, history_start, week_start)
    f.pain_now, f.pain_baseline = _median(week, minimum), _median(base, minimum)
    f.pain_readings = (len(week), len(base))
    peg_week = sorted(_between(record.peg, week_start, now), key=lambda r: r.when)
    peg_base = _median(_between(record.peg, history_start, week_start), int(params["peg_baseline_min_readings"]))
    peg_rise = peg_week[-1].value - peg_base if peg_week and peg_base is not None else None
    if f.pain_now is not None and f.pain_baseline is not None:
        f.pain_delta = f.pain_now - f.pain_baseline
        high = [r for r in week if r.value >= f.pain_baseline + params["flare_delta"]]
        span = (max(r.when for r in high) - min(r.when for r in high)).total_seconds() if high else 0.0
        sustained = len(high) >= 2 and span >= params["flare_min_hours"] * 3600
        f.flare = f.pain_delta >= params["flare_delta"] and sustained
    elif peg_rise is not None:
        f.pain_scale = "PEG"
        f.pain_now, f.pain_baseline, f.pain_delta = peg_week[-1].value, peg_base, peg_rise
        f.pain_readings = (len(peg_week), len(_between(record.peg, history_start, week_start)))
    if peg_rise is not None and peg_rise >= params["peg_flare_delta"]:
        f.flare = True
    for k in range(history // days):
        end, start = now - days * k * DAY, now - days * (k + 1) * DAY
        window = _median(_between(record.pain, start, end), int(params["flare_week_min_readings"]))
        nrs_flare = window is not None and f.pain_baseline is not None and f.pain_scale == "NRS" and \
            window >= f.pain_baseline + params["flare_delta"]
        peg_window = _between(record.peg, start, end)
        peg_flare = bool(peg_window) and peg_base is not None and \
            statistics.fmean(r.value for r in peg_window) - peg_base >= params["peg_flare_delta"]
        f.flare_weeks += int(nrs_flare or peg_flare)


def _patterns(f: Features, record: PatientRecord, days: dict[date, float], today: date, params: Params) -> None:
    history, window = int(params["history_days"]), int(params["pattern_window_days"])
    month = {d: v for d, v in days.items() if today - timedelta(days=history - 1) <= d <= today}
    median = statistics.median(month.values()) if len(month) >= params["median_min_days"] else None
    fortnight = sorted((d, v) for d, v in month.items() if d >= today - timedelta(days=window - 1))
    if median and len(fortnight) >= params["pattern_min_days"]:
        values = [v for _, v in fortnight]
        mean = statistics.fmean(values)
        cv = statistics.pstdev(values) / mean if mean else 0.0
        pairs = 0
        for day, value in fortnight:
            if value < params["boom_day_ratio"] * median:
                continue
            window_end = day + timedelta(hours=params["boom_bust_window_hours"])
            bust = any(day < d <= window_end and v <= params["bust_day_ratio"] * median for d, v in fortnight)
            boom_time = datetime.combine(day, datetime.min.time(), tzinfo=f.now.tzinfo)
            pain_rise = f.pain_baseline is not None and any(
                r.value >= f.pain_baseline + params["flare_delta"]
                for r in _between(record.pain, boom_time + DAY,
                                  boom_time + DAY + timedelta(hours=params["boom_bust_window_hours"])))
            pairs += int(bust or pain_rise)
        f.boom_bust = cv >= params["boom_bust_cv"] and pairs >= params["boom_bust_min_pairs"]
    if f.measure == "steps" and f.mean_daily_steps is not None and f.step_days_last7 >= params["inactivity_min_days"] \
            and f.mean_daily_steps < params["inactivity_steps"]:
        f.inactive, f.inactive_reason = True, (f"mean {f.mean_daily_steps:,.0f} steps a day over the last "
                                               f"{_count(params['recent_days'])} days")
    evs = _between(record.evs_minutes, f.now - history * DAY, f.now)
    if not f.inactive and evs and max(evs, key=lambda r: r.when).value == 0:
        f.inactive, f.inactive_reason = True, "Exercise Vital Sign of 0 minutes a week"
    if not f.inactive and f.measure == "steps" and median:
        run = longest = 0
        for day in sorted(month):
            run = run + 1 if month[day] < params["low_day_ratio"] * median else 0
            longest = max(longest, run)
        if longest >= params["low_day_run"]:
            f.inactive, f.inactive_reason = True, f"{longest} days in a row below half the usual activity"


def _count(value: float) -> str:
    return f"{value:g}"


def _day(moment: datetime) -> str:
    return f"{moment.day} {moment:%b}"


def vitals_fact(record: PatientRecord, now: datetime, params: Params,
                explains_weight_loss: frozenset[str] = frozenset()) -> dict[str, Any] | None:
    """The latest blood pressure of the window (confirmed, and apart the latest unconfirmed one), the highest
    temperature of the fever window (likewise), and the weight lost within the weight window."""
    fact: dict[str, Any] = {"t": "vitals"}
    recent = [b for b in record.blood_pressure if now - params["vitals_window_days"] * DAY < b.when <= now]
    for confirmed, suffix in ((True, ""), (False, "_unconfirmed")):
        readings = [b for b in recent if b.confirmed == confirmed]
        if readings:
            latest = max(readings, key=lambda b: b.when)
            if latest.systolic is not None:
                fact["systolic" + suffix] = latest.systolic
            if latest.diastolic is not None:
                fact["diastolic" + suffix] = latest.diastolic
            if confirmed:
                fact["bp_when"] = _day(latest.when)
    fever_start = now - params["fever_window_days"] * DAY
    for temperatures, name in ((record.temperature, "temperature_max"),
                               (record.temperature_unconfirmed, "temperature_max_unconfirmed")):
        fever = _between(temperatures, fever_start, now)
        if fever:
            fact[name] = max(t.value for t in fever)
    weights = sorted((w for w in record.weight if w.when <= now), key=lambda w: w.when)
    if len(weights) >= 2:
        latest_weight = weights[-1]
        span = params["weight_window_months"] * 365 / 12 * DAY
        earlier = [w.value for w in weights[:-1] if latest_weight.when - span <= w.when]
        if earlier and max(earlier) > latest_weight.value:
            fact["weight_loss_percent"] = round((max(earlier) - latest_weight.value) / max(earlier) * 100, 2)
            fact["weight_loss_explained"] = bool(record.weight_goals) or any(
                set(c.value_sets) & explains_weight_loss for c in record.conditions)
    return fact if len(fact) > 1 else None


def condition_facts(record: PatientRecord, now: datetime) -> list[dict[str, Any]]:
    """One fact per value set each counting condition falls in; an undated condition has no days_since_recorded
    (the rules treat it as current)."""
    facts = []
    for condition in record.conditions:
        for value_set, code in condition.value_sets.items():
            fact: dict[str, Any] = {"t": "condition", "value_set": value_set, "code": code,
                                    "source": condition.reference}
            if condition.recorded is not None:
                fact["days_since_recorded"] = max(0, (now - condition.recorded).days)
                fact["recorded"] = _day(condition.recorded)
            facts.append(fact)
    return facts
