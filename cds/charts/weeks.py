"""What the chart and its table show, computed from a stored series. Pure: the weeks end at the series' `now`,
with the same windows as the card's data lines, so the newest row repeats the card's numbers."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from cds.charts.model import Series
from cds.charts.series import WEEKS

DAY = timedelta(days=1)


@dataclass(frozen=True)
class Week:
    start: date
    end: date
    planned: float | None  # min/week, or steps/day
    done: float | None  # min in the week, or mean steps/day
    pain_mean: float | None
    pain_median: float | None
    flare: bool

    @property
    def adherence(self) -> float | None:
        return self.done / self.planned if self.done is not None and self.planned else None


def daily_activity(series: Series) -> dict[date, float]:
    """Activity per day: the day's steps, or the day's summed session minutes."""
    if series.measure == "steps":
        return {day: value for day, value in series.steps}
    days: dict[date, float] = {}
    for when, minutes in series.sessions:
        days[when.date()] = days.get(when.date(), 0.0) + minutes
    return days


def planned_at(series: Series, when: datetime) -> float | None:
    """The weekly minutes (or daily steps) planned at an instant: the newest order authored by then."""
    if series.measure == "steps":
        return series.plan.quota if series.plan else None
    if when >= series.now and series.plan is not None:
        return series.plan.weekly
    doses = [minutes * per_week for authored, minutes, per_week in series.orders if authored <= when]
    return float(doses[-1]) if doses else None


def first_record(series: Series) -> datetime | None:
    """When the first activity or pain reading of the 12 weeks was recorded."""
    times = [w for w, _ in series.sessions] + [w for w, _ in series.pain] + \
        [datetime.combine(d, datetime.min.time(), tzinfo=series.now.tzinfo) for d, _ in series.steps]
    return min(times, default=None)


def weeks(series: Series) -> list[Week]:
    """The weeks ending at `now`, oldest first: up to 12, from the first with any record (no record is not 0)."""
    rows = []
    today = series.now.date()
    since = first_record(series)
    for k in reversed(range(WEEKS)):
        end = series.now - 7 * k * DAY
        start = end - 7 * DAY
        first, last = today - (7 * k + 6) * DAY, today - 7 * k * DAY
        if since is None or end < since:
            continue
        if series.measure == "steps":
            values = [v for day, v in series.steps if first <= day <= last]
            done = statistics.fmean(values) if values else None
        else:
            done = sum(m for when, m in series.sessions if start < when <= end) if series.sessions else None
        pain = [v for when, v in series.pain if start < when <= end]
        median = statistics.median(pain) if pain else None
        flare = len(pain) >= 2 and median is not None and series.pain_baseline is not None and \
            median >= series.pain_baseline + series.params.flare_delta
        rows.append(Week(first, last, planned_at(series, end), done, statistics.fmean(pain) if pain else None,
                         median, flare))
    return rows


def boom_bust_days(series: Series) -> tuple[list[date], list[date]]:
    """Boom days (at least boom_day_ratio x the 28-day median) and the bust days that follow them."""
    days = daily_activity(series)
    params = series.params
    window = timedelta(hours=params.boom_bust_window_hours)
    booms: list[date] = []
    busts: list[date] = []
    for day in sorted(days):
        month = [v for d, v in days.items() if day - 27 * DAY <= d <= day]
        if len(month) < 7:
            continue
        median = statistics.median(month)
        if median and days[day] >= params.boom_day_ratio * median:
            booms.append(day)
        elif median and days[day] <= params.bust_day_ratio * median and \
                any(timedelta(0) < (day - boom) <= window for boom in booms):
            busts.append(day)
    return booms, busts


def plan_steps(series: Series) -> list[tuple[date, float]]:
    """The plan line's corners: minutes per session (or steps a day) from each order's start, then now."""
    first = series.now.date() - (WEEKS * 7 - 1) * DAY
    if series.measure == "steps":
        return [(first, series.plan.quota)] if series.plan and series.plan.quota else []
    corners = [(max(first, authored.date()), float(minutes)) for authored, minutes, _ in series.orders]
    now_minutes = series.plan.minutes if series.plan is not None else None
    if now_minutes is not None and (not corners or corners[-1][1] != now_minutes):
        corners.append((corners[-1][0] if corners else first, float(now_minutes)))
    return corners
