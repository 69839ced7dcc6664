"""Derived features (docs/clinical.md), and the facts the rules read. Pure: `now` and parameters come in; every
window and count is a parameter of rules/parameters.yaml."""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Literal

from cds.clinical import dose as dosing
from cds.clinical.records import BloodPressure, Dose, PatientRecord, Reading

Params = Mapping[str, float]
DAY = timedelta(days=1)
DAYS_PER_WEEK = 7
# Resource types that may hold the plan in force besides an exercise order: a step Goal, a CarePlan activity.
PLAN_TYPES = ("Goal", "CarePlan")


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
    days_on_dose: int | None = None  # since the current order or step goal started
    days_since_step_back: int | None = None  # since the current dose replaced a higher one
    low_adherence_weeks: int = 0  # consecutive weeks ending now below adherence_low
    peg_unconfirmed: bool = False  # one PEG rise, not yet confirmed
    boom_above_plan: bool = False  # the boom days go above the plan or quota
    pattern_measure: Literal["minutes", "steps"] = "minutes"
    # The resource types asked for whose request failed ("could not be read") that this patient's dose could rest on.
    unread_needed: list[str] = field(default_factory=list)
    age_assumed: bool = False  # no birth date: taken for an adult
    set_aside: int = 0  # readings the data hygiene set aside
    untimed_last7: int = 0  # sessions of the last 7 days recorded without a duration
    dose_unread: bool = False  # the current order has no dose that can be read
    minute_goal: float | None = None  # weekly minutes of an active minute Goal

    def review_days(self, params: Params) -> int:
        """Days until a held dose may change: the rest of its time on the dose or of its step-back hold, else a
        week."""
        waits = []
        if self.days_on_dose is not None and self.days_on_dose < params["min_days_on_dose"]:
            waits.append(int(params["min_days_on_dose"]) - self.days_on_dose)
        if self.days_since_step_back is not None and self.days_since_step_back < params["step_back_hold_days"]:
            waits.append(int(params["step_back_hold_days"]) - self.days_since_step_back)
        return max(waits) if waits else int(params["recent_days"])

    def patient_fact(self) -> dict[str, Any]:
        fact: dict[str, Any] = {
            "t": "patient", "has_prescription": self.has_prescription, "valid_days": self.valid_days,
            "flare": self.flare, "flare_weeks": self.flare_weeks, "planned_below_start": self.planned_below_start,
            "boom_bust": self.boom_bust, "inactive": self.inactive, "pain_known": self.pain_delta is not None,
            "peg_unconfirmed": self.peg_unconfirmed, "low_adherence_weeks": self.low_adherence_weeks,
            "boom_above_plan": self.boom_above_plan,
            "plan_unread": any(t in PLAN_TYPES for t in self.unread_needed),
            "data_unread": any(t not in PLAN_TYPES for t in self.unread_needed),
            "age_assumed": self.age_assumed, "dose_unread": self.dose_unread,
            "minute_goal_met": bool(self.minute_goal and self.weekly_minutes is not None
                                    and self.weekly_minutes >= self.minute_goal),
            "set_aside": self.set_aside > 0,
        }
        optional = {"days_since_activity": self.days_since_activity, "days_since_pain": self.days_since_pain,
                    "adherence": self.adherence, "pain_delta": self.pain_delta, "acwr": self.acwr,
                    "weekly_minutes": self.weekly_minutes, "mean_daily_steps": self.mean_daily_steps,
                    "days_on_dose": self.days_on_dose, "days_since_step_back": self.days_since_step_back}
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


def pattern_days(record: PatientRecord, measure: str, today: date, params: Params) -> tuple[str, dict[date, float]]:
    """The daily activity the patterns read: daily steps when present on enough days of the pattern window,
    whatever carries the dose; else the measure of the dose."""
    window = int(params["pattern_window_days"])
    first_day = today - timedelta(days=window - 1)
    step_days = sum(1 for d in record.steps if first_day <= d <= today)
    if step_days >= params["pattern_steps_min_days"]:
        return "steps", daily_activity(record, "steps")
    return measure, daily_activity(record, measure)


def compute(record: PatientRecord, now: datetime, params: Params, unread: tuple[str, ...] = ()) -> Features:
    order = record.current_order
    measure: Literal["minutes", "steps"] = "minutes"
    sessions = record.sessions or record.untimed_sessions
    if not sessions and order is None and (record.steps or record.step_goal is not None):
        measure = "steps"
    has_prescription = order is not None if measure == "minutes" else record.step_goal is not None
    f = Features(now=now, measure=measure, has_prescription=has_prescription,
                 set_aside=sum(count for _, count in record.readings_set_aside()))
    f.unread_needed = unread_needed(unread, measure, order is not None, bool(sessions))
    f.tolerated = [o.dose for o in record.past_orders if o.dose is not None]
    # The plan in force has no dose that can be read: an order without timing or instruction, or a step goal
    # without a quota.
    f.dose_unread = (order is not None and order.dose is None) if measure == "minutes" else \
        (record.step_goal is not None and record.step_goal.steps_per_day is None)
    f.minute_goal = record.minute_goal.weekly_minutes if record.minute_goal is not None else None
    days = daily_activity(record, measure)
    today = now.date()
    _baseline(f, record, days, params)
    _plan(f, record, params)
    _time_on_dose(f, record)
    _activity(f, record, days, today, params)
    _low_adherence(f, record, params)
    _pain(f, record, now, params)
    f.pattern_measure, pattern = pattern_days(record, measure, today, params)  # type: ignore[assignment]
    _patterns(f, record, pattern, today, params)
    # An Exercise Vital Sign above zero reports recent activity: the day it was answered is not a silent day.
    active_days = (set(days) | {s.when.date() for s in record.untimed_sessions}
                   | {r.when.date() for r in record.evs_minutes if r.value > 0})
    last_day = max((d for d in active_days if d <= today), default=None)
    f.days_since_activity = (today - last_day).days if last_day else None
    pain_times = [r.when for r in record.pain + record.peg if r.when <= now]
    f.days_since_pain = (today - max(pain_times).date()).days if pain_times else None
    return f


def unread_needed(unread: tuple[str, ...], measure: str, has_order: bool, has_sessions: bool) -> list[str]:
    """The data that could not be read and that this patient's dose could rest on: Goals only when a step goal
    could carry the dose (steps, or no order and no sessions), CarePlans only when there is no exercise order;
    anything else always. What could not have changed the recommendation is not named on the card."""
    goal_could_carry = measure == "steps" or not (has_order or has_sessions)
    return [t for t in unread if (t != "Goal" or goal_could_carry) and (t != "CarePlan" or not has_order)]


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
    if record.step_goal is not None:  # a goal in force: its quota, or none when it cannot be read
        if record.step_goal.steps_per_day is not None:
            f.quota, f.plan_source = record.step_goal.steps_per_day, record.step_goal.reference
            f.planned_below_start = f.start_quota is not None and f.quota < f.start_quota
    elif f.start_quota is not None:
        f.quota, f.plan_source = float(f.start_quota), "starting quota"


def _time_on_dose(f: Features, record: PatientRecord) -> None:
    """Days on the current dose, and days since a step-back when the current order is lower than the one before."""
    order = record.current_order
    if f.measure == "minutes" and order is not None:
        started = order.start
        if started is not None and started <= f.now:
            f.days_on_dose = (f.now.date() - started.date()).days
        replaced = {ref.get("reference") for ref in order.resource.get("replaces") or [] if isinstance(ref, dict)}
        earlier = [o for o in record.past_orders if o.reference in replaced] or record.past_orders[:1]
        if (f.days_on_dose is not None and order.dose is not None and earlier and earlier[0].dose is not None
                and order.dose.weekly < earlier[0].dose.weekly):
            f.days_since_step_back = f.days_on_dose
    elif f.measure == "steps" and record.step_goal is not None:
        started = record.step_goal.start
        if started is not None and started <= f.now:
            f.days_on_dose = (f.now.date() - started.date()).days


def _low_adherence(f: Features, record: PatientRecord, params: Params) -> None:
    """Consecutive 7-day windows, ending now, in which less than adherence_low of the plan was done."""
    week = int(params["recent_days"])
    for k in range(int(params["rebaseline_low_adherence_weeks"])):
        end, start = f.now - week * k * DAY, f.now - week * (k + 1) * DAY
        untimed = _between(record.untimed_sessions, start, end)
        if f.measure == "minutes" and f.plan is not None and untimed:
            share = (len(untimed) + len(_between(record.sessions, start, end))) / f.plan.per_week
        elif f.measure == "minutes" and f.plan is not None and record.sessions:
            share = sum(s.value for s in _between(record.sessions, start, end)) / f.plan.weekly
        elif f.measure == "steps" and f.quota:
            steps = [r.value for r in record.steps.values() if start < r.when <= end]
            share = statistics.fmean(steps) / f.quota if steps else 0.0
        else:
            return
        if share >= params["adherence_low"]:
            return
        f.low_adherence_weeks += 1


def _activity(f: Features, record: PatientRecord, days: dict[date, float], today: date, params: Params) -> None:
    week, history = int(params["recent_days"]), int(params["history_days"])
    recent = _between(record.sessions, f.now - week * DAY, f.now)
    f.sessions_last7 = len(recent)
    if record.sessions or record.untimed_sessions:
        f.weekly_minutes = sum(s.value for s in recent)
    else:
        evs = _between(record.evs_minutes, f.now - history * DAY, f.now)
        f.weekly_minutes = max(evs, key=lambda r: r.when).value if evs else None
    week_start, history_start = today - timedelta(days=week - 1), today - timedelta(days=history - 1)
    step_days = [r.value for d, r in record.steps.items() if week_start <= d <= today]
    f.step_days_last7 = len(step_days)
    f.mean_daily_steps = statistics.fmean(step_days) if step_days else None
    untimed = _between(record.untimed_sessions, f.now - week * DAY, f.now)
    f.untimed_last7 = len(untimed)
    f.sessions_last7 += len(untimed)
    if untimed and f.measure == "minutes" and f.plan is not None:
        # Durations missing: adherence is sessions done / sessions planned (the card says so).
        f.adherence = f.sessions_last7 / f.plan.per_week
        if not f.weekly_minutes:  # no timed minutes this week: the weekly minutes are unknown, not zero
            f.weekly_minutes = None
    elif f.measure == "minutes" and f.plan is not None and f.weekly_minutes is not None:
        f.adherence = f.weekly_minutes / f.plan.weekly
    elif f.measure == "steps" and f.quota and f.mean_daily_steps is not None:
        f.adherence = f.mean_daily_steps / f.quota
    acute = [v for d, v in days.items() if week_start <= d <= today]
    chronic = [v for d, v in days.items() if history_start <= d <= today]
    first = min(days, default=None)
    if first is not None and (today - first).days >= params["acwr_min_history_days"] - 1 and chronic:
        # Only above a minimum chronic volume: a ratio of small numbers swings on a single walk.
        if f.measure == "steps":
            chronic_mean = statistics.fmean(chronic)
            enough = chronic_mean >= params["acwr_min_chronic_steps"]
            f.acwr = statistics.fmean(acute) / chronic_mean if acute and enough else None
        else:
            span = min(history, (today - first).days + 1)
            chronic_mean = sum(chronic) / span
            enough = chronic_mean * DAYS_PER_WEEK >= params["acwr_min_chronic_minutes"]
            f.acwr = (sum(acute) / week) / chronic_mean if enough else None


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
    if peg_rise is not None and peg_rise >= params["peg_flare_delta"] and peg_base is not None:
        # One PEG rise is not a flare (the PEG's important difference is a group figure): it is confirmed by a
        # second high PEG a day or more apart, or by an NRS flare; unconfirmed, it holds the dose.
        high = [r for r in peg_week if r.value >= peg_base + params["peg_flare_delta"]]
        span = (high[-1].when - high[0].when).total_seconds() if high else 0.0
        confirmed = len(high) >= params["peg_confirm_readings"] and span >= params["flare_min_hours"] * 3600
        f.flare = f.flare or confirmed
        f.peg_unconfirmed = not f.flare
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
    history_start, window_start = today - timedelta(days=history - 1), today - timedelta(days=window - 1)
    month = {d: v for d, v in days.items() if history_start <= d <= today}
    median = statistics.median(month.values()) if len(month) >= params["median_min_days"] else None
    fortnight = sorted((d, v) for d, v in month.items() if d >= window_start)
    if median and len(fortnight) >= params["pattern_min_days"]:
        pairs = 0
        level = f.quota if f.pattern_measure == "steps" else (f.plan.minutes if f.plan else None)
        level = level if f.pattern_measure == f.measure else None
        for day, value in fortnight:
            if value < params["boom_day_ratio"] * median:
                continue
            f.boom_above_plan = f.boom_above_plan or (level is not None and value > level)
            window_end = day + timedelta(hours=params["boom_bust_window_hours"])
            bust = any(day < d <= window_end and v <= params["bust_day_ratio"] * median for d, v in fortnight)
            boom_time = datetime.combine(day, datetime.min.time(), tzinfo=f.now.tzinfo)
            pain_rise = f.pain_baseline is not None and any(
                r.value >= f.pain_baseline + params["flare_delta"]
                for r in _between(record.pain, boom_time + DAY,
                                  boom_time + DAY + timedelta(hours=params["boom_bust_window_hours"])))
            pairs += int(bust or pain_rise)
        f.boom_bust = pairs >= params["boom_bust_min_pairs"] and _variation(fortnight) >= params["boom_bust_cv"]
    f.boom_above_plan = f.boom_bust and f.boom_above_plan
    # Daily steps show inactivity whatever carries the dose (planned sessions and otherwise barely moving), but
    # never for a patient at or above the step quota.
    at_quota = f.measure == "steps" and f.has_prescription and f.adherence is not None and f.adherence >= 1
    if at_quota:
        return
    if f.mean_daily_steps is not None and f.step_days_last7 >= params["inactivity_min_days"] \
            and f.mean_daily_steps < params["inactivity_steps"]:
        f.inactive, f.inactive_reason = True, (f"mean {f.mean_daily_steps:,.0f} steps a day over the last "
                                               f"{_count(params['recent_days'])} days")
    evs = _between(record.evs_minutes, f.now - history * DAY, f.now)
    if not f.inactive and evs and max(evs, key=lambda r: r.when).value == 0:
        f.inactive, f.inactive_reason = True, "Exercise Vital Sign of 0 minutes a week"
    if not f.inactive and f.pattern_measure == "steps" and median:
        run = longest = 0
        for day in sorted(month):
            run = run + 1 if month[day] < params["low_day_ratio"] * median else 0
            longest = max(longest, run)
        if longest >= params["low_day_run"]:
            f.inactive, f.inactive_reason = True, f"{longest} days in a row below half the usual activity"


def _variation(days: list[tuple[date, float]]) -> float:
    """The coefficient of variation of the days' activity (exact: statistics.pstdev), 0 when their mean is 0. Only
    read once enough boom-bust pairs are found: it is the costliest figure of the patterns."""
    values = [v for _, v in days]
    mean = statistics.fmean(values)
    return statistics.pstdev(values) / mean if mean else 0.0


def _count(value: float) -> str:
    return f"{value:g}"


MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def day_words(moment: date) -> str:
    """A day as cards and facts write it: "27 Nov" (the month's English abbreviation, whatever the locale; strftime's
    %b follows the locale and costs a few microseconds a call)."""
    return f"{moment.day} {MONTHS[moment.month - 1]}"


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
                fact["bp_when"] = day_words(latest.when)
    _high_pressure(fact, [b for b in recent if b.confirmed], now, params)
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
                {vs for vs in c.value_sets if c.clinical(vs) == "current"} & explains_weight_loss
                for c in record.conditions)
    return fact if len(fact) > 1 else None


def _high_pressure(fact: dict[str, Any], readings: list[BloodPressure], now: datetime, params: Params) -> None:
    """The resting reading that holds the dose for a recheck: the latest of the window when it is at or above the
    limits, else the latest of the last bp_recent_days that is; with the later readings below the limits, one a day.
    One normal reading does not clear a severe one."""
    def high(b: BloodPressure) -> bool:
        return (b.systolic is not None and b.systolic >= params["bp_systolic_max"]) or \
            (b.diastolic is not None and b.diastolic >= params["bp_diastolic_max"])

    if not readings:
        return
    latest = readings[-1]
    recent = now - params["bp_recent_days"] * DAY
    found = latest if high(latest) else next((b for b in reversed(readings) if b.when > recent and high(b)), None)
    if found is None:
        return
    if found.systolic is not None:
        fact["bp_high_systolic"] = found.systolic
    if found.diastolic is not None:
        fact["bp_high_diastolic"] = found.diastolic
    fact["bp_high_when"] = day_words(found.when)
    normal_days = {b.when.date() for b in readings if b.when > found.when and not high(b)}
    if normal_days:
        fact["bp_normal_since"] = len(normal_days)


def condition_facts(record: PatientRecord, now: datetime) -> list[dict[str, Any]]:
    """One fact per value set each condition falls in, current or history; an undated condition has no
    days_since_recorded (the rules treat it as current). The same condition recorded twice (two Conditions of one
    value set, clinical status, code and date) is one fact."""
    facts = []
    seen: set[tuple[Any, ...]] = set()
    for condition in sorted(record.conditions, key=lambda c: (c.recorded is None, c.recorded or now, c.reference)):
        for value_set, code in condition.value_sets.items():
            clinical = condition.clinical(value_set)
            key = (value_set, clinical, code, condition.recorded)
            if key in seen:
                continue
            seen.add(key)
            fact: dict[str, Any] = {"t": "condition", "value_set": value_set, "code": code, "clinical": clinical,
                                    "source": condition.reference}
            if condition.recorded is not None:
                fact["days_since_recorded"] = max(0, (now - condition.recorded).days)
                fact["recorded"] = day_words(condition.recorded)
            facts.append(fact)
    return facts
