"""Steps from phones and wearables -> one total a day.

Devices post steps as daily totals or as intervals shorter than a day (hourly, every six hours). Intervals are
summed per calendar day (UTC) and per source (the device, else the performer, else the Observation's meta.source);
an interval that spans midnight counts on the day it starts, because a count cannot be split honestly without the
device's minute data. Intervals of one source that overlap count the same minutes: they are counted once (the
non-overlapping ones that count the most). Daily totals are never added: within a source, a day's largest daily
total stands; a source with both intervals and a daily total for the same day gives the larger of the two (the
daily total may be a running count sent before the last intervals, or the intervals may miss hours the daily total
covers). Several sources on the same day (a phone and a watch count the same walk) count once: the largest plausible
source total.
"""

from __future__ import annotations

import bisect
from datetime import date, datetime, timedelta
from operator import attrgetter
from typing import Any, NamedTuple

from cds.clinical.records import IMPLAUSIBLE, Reading, SetAside

UNKNOWN_SOURCE = "unknown"
# A whole day is 23 to 25 hours long: a local calendar day across a clock change is one of those.
SHORTEST_DAY, LONGEST_DAY = timedelta(hours=23), timedelta(hours=25)


class StepPart(NamedTuple):
    """One steps Observation as read: a daily total (no interval) or the count of an interval."""

    day: date
    source: str
    when: datetime  # the reading's moment: an interval's end
    value: float
    reference: str  # Observation/id
    interval: tuple[datetime, datetime] | None = None


def source_of(obs: dict[str, Any]) -> str:
    """Who counted the steps: device.reference, else the first performer reference, else meta.source."""
    device = obs.get("device")
    if isinstance(device, dict) and isinstance(device.get("reference"), str) and device["reference"]:
        return device["reference"]
    for performer in obs.get("performer") or []:
        if isinstance(performer, dict) and isinstance(performer.get("reference"), str) and performer["reference"]:
            return performer["reference"]
    meta = obs.get("meta")
    if isinstance(meta, dict) and isinstance(meta.get("source"), str) and meta["source"]:
        return meta["source"]
    return UNKNOWN_SOURCE


def _source_total(parts: list[StepPart]) -> Reading:
    """One source's day: the larger of its largest daily total and its intervals counted once each."""
    if len(parts) == 1 and parts[0].interval is None:  # the usual day: one daily total
        return Reading(parts[0].when, parts[0].value, parts[0].reference)
    totals = []
    intervals = [p for p in parts if p.interval is not None]
    if intervals:
        chosen = _apart(intervals)
        totals.append(Reading(max(p.when for p in chosen), sum(p.value for p in chosen), chosen[0].reference))
    dailies = [p for p in parts if p.interval is None]
    if dailies:
        largest = max(dailies, key=lambda p: (p.value, p.when))
        totals.append(Reading(largest.when, largest.value, largest.reference))
    return max(totals, key=lambda r: r.value)


def _apart(intervals: list[StepPart]) -> list[StepPart]:
    """The intervals of one source and day that do not overlap and count the most steps together: intervals that
    overlap measure the same minutes (the same interval posted twice, an hour inside a two-hour total), so a step
    is never counted twice. Weighted interval scheduling: O(n log n)."""
    same: dict[tuple[datetime, datetime], StepPart] = {}
    for part in intervals:  # the same interval posted twice: one, the larger count
        kept = same.get(part.interval)  # type: ignore[arg-type]
        if kept is None or part.value > kept.value:
            same[part.interval] = part  # type: ignore[index]
    ordered = sorted(same.values(), key=lambda p: (p.interval[1], p.interval[0], -p.value))  # type: ignore[index]
    ends = [p.interval[1] for p in ordered]  # type: ignore[index]
    best: list[tuple[float, list[StepPart]]] = [(0.0, [])]
    for index, part in enumerate(ordered):
        start = part.interval[0]  # type: ignore[index]
        before = bisect.bisect_right(ends, start, 0, index)  # the intervals ending at or before this one starts
        with_it = best[before][0] + part.value
        if with_it > best[index][0]:
            best.append((with_it, [*best[before][1], part]))
        else:
            best.append(best[index])
    return best[-1][1] or ordered[:1]


_DAY = attrgetter("day")


def day_totals(parts: list[StepPart], day_max: float) -> tuple[dict[date, Reading], list[SetAside]]:
    """One Reading a day (the largest plausible source total), and the source-days set aside as implausible."""
    if len({part.day for part in parts}) == len(parts) and all(part.interval is None for part in parts):
        return _one_total_a_day(parts, day_max)
    return _grouped_totals(parts, day_max)


def _grouped_totals(parts: list[StepPart], day_max: float) -> tuple[dict[date, Reading], list[SetAside]]:
    grouped: dict[date, dict[str, list[StepPart]]] = {}
    for part in parts:
        by_source = grouped.get(part.day)
        if by_source is None:
            grouped[part.day] = {part.source: [part]}
        else:
            by_source.setdefault(part.source, []).append(part)
    days: dict[date, Reading] = {}
    set_aside = []
    for day in sorted(grouped):
        plausible = []
        by_source = grouped[day]
        for source in sorted(by_source) if len(by_source) > 1 else by_source:
            total = _source_total(by_source[source])
            if 0 <= total.value <= day_max:
                plausible.append(total)
            else:
                set_aside.append(_implausible(total.source, total.value, day, source, day_max))
        if plausible:
            days[day] = plausible[0] if len(plausible) == 1 else max(plausible, key=lambda r: r.value)
    return days, set_aside


def _one_total_a_day(parts: list[StepPart], day_max: float) -> tuple[dict[date, Reading], list[SetAside]]:
    """day_totals when each day has one daily total (the usual export of a phone or a watch): no grouping."""
    days: dict[date, Reading] = {}
    set_aside = []
    new = tuple.__new__  # the Reading without its Python __new__: one a day, every call
    for part in sorted(parts, key=_DAY):
        if 0 <= part.value <= day_max:
            days[part.day] = new(Reading, (part.when, part.value, part.reference))
        else:
            set_aside.append(_implausible(part.reference, part.value, part.day, part.source, day_max))
    return days, set_aside


def _implausible(reference: str, value: float, day: date, source: str, day_max: float) -> SetAside:
    return SetAside(reference, f"{value:,.0f} steps on {day} from {source} is not plausible (a day counts at most "
                               f"{day_max:,.0f})", IMPLAUSIBLE)
