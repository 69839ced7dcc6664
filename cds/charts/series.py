"""From an Outcome to the series behind a card's chart: dates, numbers and the service's own codes only.

Pure: no I/O, no clock. Nothing here copies a name, an identifier or free text from the record; the shape is
checked again when a chart is read (cds/charts/model.py)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from cds.clinical.features import Features
from cds.clinical.records import PatientRecord
from cds.engine import Evaluation
from cds.hooks.models import Card
from cds.services.proposed import proposed_dose

WEEKS = 12
SERIES_VERSION = 1
# What one chart stores and draws, whatever the record holds: the newest readings of each kind (a session a day
# for 12 weeks is 84; wearables that split a day into intervals send a few hundred), the newest orders (each is
# a line and a label on the chart) and the red flags reported.
MAX_READINGS = 1000
MAX_ORDERS = 24
MAX_FLAGS = 16
# The thresholds the chart marks flares and boom and bust days with; the same parameters the rules read.
CHART_PARAMS = ("flare_delta", "boom_day_ratio", "bust_day_ratio", "boom_bust_window_hours")


def chart_series(features: Features, record: PatientRecord, evaluation: Evaluation,
                 params: Mapping[str, float]) -> dict[str, Any]:
    """The part of the series every card of a call shares: 12 weeks of activity and pain, plans and red flags."""
    now = features.now
    start = now - timedelta(weeks=WEEKS)
    first_day = (now - timedelta(days=WEEKS * 7 - 1)).date()
    steps, today = features.measure == "steps", now.date()
    # Dates stay objects and nothing is sorted here: the store's JSON encoder (orjson) writes ISO 8601 in C and the
    # chart sorts when it is opened, which keeps this off the hook call's clock.
    series: dict[str, Any] = {
        "v": SERIES_VERSION, "measure": features.measure, "now": now,
        "sessions": [] if steps else newest([(r.when, r.value) for r in record.sessions if start < r.when <= now],
                                            MAX_READINGS),
        "steps": [(day, r.value) for day, r in record.steps.items() if first_day <= day <= today] if steps else [],
        "pain": newest([(r.when, r.value) for r in record.pain if start < r.when <= now], MAX_READINGS),
        "pain_baseline": features.pain_baseline if features.pain_scale == "NRS" else None,
        "orders": newest([(o.authored, o.dose.minutes, o.dose.per_week) for o in record.orders
                          if o.dose is not None and o.authored is not None and o.authored <= now], MAX_ORDERS),
        "plan": _dose(features) if features.has_prescription else None,  # the plan in force, never a proposal
        "red_flags": red_flag_marks(record, evaluation, now)[-MAX_FLAGS:],
        "params": {name: params[name] for name in CHART_PARAMS if name in params},
        "language": record.language,
    }
    return series


def newest(items: list[Any], most: int) -> list[Any]:
    """The `most` newest (by their first element), in the order given; sorted only when there are more."""
    if len(items) <= most:
        return items
    return sorted(items, key=lambda item: item[0])[-most:]


def _dose(features: Features) -> dict[str, float] | None:
    if features.measure == "steps":
        return {"quota": features.quota} if features.quota else None
    plan = features.plan
    return {"minutes": plan.minutes, "per_week": plan.per_week} if plan is not None else None


def red_flag_marks(record: PatientRecord, evaluation: Evaluation, now: Any) -> list[list[Any]]:
    """[when, kind, value] for each reading or condition a selected rule reported (red flags and precautions): the
    latest blood pressure, the highest temperature, the latest weight, or the condition's recorded date."""
    marks: list[list[Any]] = []
    reported = [f for f in evaluation.findings if f.kind == "dose"]
    for finding in reported:
        for fact in finding.facts.values():
            if fact.get("t") == "condition":
                marks.extend([c.recorded or now, fact["value_set"], None] for c in record.conditions
                             if c.reference == fact.get("source"))
            elif fact.get("t") == "vitals":
                marks.extend(_vital_marks(record, fact, now))
    unique = {(m[0], m[1]): m for m in marks}
    return sorted(unique.values(), key=lambda m: (m[0], m[1]))


def _vital_marks(record: PatientRecord, fact: dict[str, Any], now: Any) -> list[list[Any]]:
    marks: list[list[Any]] = []
    if "systolic" in fact or "systolic_unconfirmed" in fact:
        readings = [b for b in record.blood_pressure if b.when <= now and b.systolic is not None]
        latest = max(readings, key=lambda b: b.when, default=None)
        if latest is not None:
            marks.append([latest.when, "blood-pressure", latest.systolic])
    if "temperature_max" in fact:
        week = [t for t in record.temperature if now - timedelta(days=7) < t.when <= now]
        if week:
            hottest = max(week, key=lambda t: t.value)
            marks.append([hottest.when, "fever", hottest.value])
    if "weight_loss_percent" in fact:
        weights = [w for w in record.weight if w.when <= now]
        if weights:
            latest_weight = max(weights, key=lambda w: w.when)
            marks.append([latest_weight.when, "weight-loss", latest_weight.value])
    return marks


def has_data(series: Mapping[str, Any]) -> bool:
    """Whether a chart would show anything: activity or pain within the 12 weeks."""
    return bool(series["sessions"] or series["steps"] or series["pain"])


def call_series(shared: Mapping[str, Any], cards: list[Card], evaluation: Evaluation) -> dict[str, Any]:
    """The shared part with what the take-home plan follows: the call's cards in order, and its leading card (the
    dose card, else the first order card): its rule, its proposed dose and its uuid."""
    lead = cards[0] if cards else None
    return {**shared, "codes": [c.source.topic.code for c in cards if c.source.topic is not None],
            "lead_rule": evaluation.findings[0].rule_id if evaluation.findings else None,
            "lead_proposed": proposed_dose(lead) if lead is not None else None,
            "lead_card": lead.uuid if lead is not None else None}


def card_series(shared: Mapping[str, Any], card: Card) -> dict[str, Any]:
    """One card's series: the shared part, its recommendation code and the dose it proposes."""
    code = card.source.topic.code if card.source.topic is not None else "none"
    return {**shared, "code": code, "proposed": proposed_dose(card)}
