"""Findings -> CDS Hooks cards (CLINICAL.md section 7). Pure: no I/O, no clock; uuids derive from the
hookInstance and the rule, so the same request gives the same response."""

from __future__ import annotations

import string
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cached_property
from typing import Any

from fhir.resources.R4B.goal import Goal
from fhir.resources.R4B.servicerequest import ServiceRequest

from cds.clinical.features import Features
from cds.clinical.orders import OrderReview
from cds.clinical.recommend import Recommendation, current_words
from cds.clinical.records import Dose, PatientRecord
from cds.engine import Evaluation, Fired, Knowledge
from cds.hooks.models import Action, Card, Coding, OverrideReasonCoding, Source, Suggestion

SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
PA_SERVICE_REQUEST = "http://hl7.org/fhir/us/physical-activity/StructureDefinition/pa-servicerequest"
PA_GOAL = "http://hl7.org/fhir/us/physical-activity/StructureDefinition/pa-goal"
EXERCISE_THERAPY = ("229065009", "Exercise therapy")
TOLERANCE = ("426866005", "Determination of physical activity tolerance")
EXERCISE_REFERRAL = ("390893007", "Referral to exercise programme")
PATIENT_REFERRAL = ("3457005", "Patient referral")
FLAG_WORDS = {"cauda-equina": "signs of cauda equina syndrome", "malignancy": "suspected malignancy",
              "infection": "suspected infection", "fracture": "fracture or trauma",
              "inflammatory": "inflammatory spondyloarthritis", "cardiovascular": "cardiovascular symptom"}


@dataclass
class CardContext:
    """What the card builder needs besides the findings."""

    hook_instance: str
    service_id: str
    patient_id: str
    knowledge: Knowledge
    features: Features
    record: PatientRecord
    params: Mapping[str, float]
    recommendation: Recommendation | None = None
    reviews: dict[str, OrderReview] = field(default_factory=dict)
    drafts: dict[str, dict[str, Any]] = field(default_factory=dict)  # Type/id -> draft resource

    @cached_property
    def data(self) -> str:
        """The data lines behind the cards, the same for every card of the call: built once."""
        return data_lines(self)


def card_uuid(hook_instance: str, *parts: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "pacing-cds:" + ":".join((hook_instance, *parts))))


def _number(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _fill(template: str, values: Mapping[str, str]) -> str:
    names = {name for _, name, _, _ in string.Formatter().parse(template) if name}
    return template.format(**{name: values.get(name, "") for name in names}).strip()


def _clip(summary: str) -> str:
    return summary if len(summary) < 140 else summary[:137].rstrip() + "..."


# ---------------------------------------------------------------- the data behind a card


def _days_ago(days: int) -> str:
    return "today" if days == 0 else "yesterday" if days == 1 else f"{days} days ago"


def data_lines(ctx: CardContext) -> str:
    f, lines = ctx.features, []
    today = f.now.date()
    week = f"{today - timedelta(days=6)} to {today}"
    if f.measure == "minutes":
        if f.plan is not None:
            lines.append(f"- Plan: {f.plan.words()} ({f.plan.weekly} min/week), from {f.plan_source}")
        if f.weekly_minutes is not None:
            done = f"{f.weekly_minutes:.0f} min in {f.sessions_last7} sessions" if ctx.record.sessions \
                else f"{f.weekly_minutes:.0f} min/week (Exercise Vital Sign)"
            share = f" ({f.adherence:.0%} of plan)" if f.adherence is not None else ""
            lines.append(f"- Done {week}: {done}{share}")
    else:
        if f.quota:
            lines.append(f"- Quota: {round(f.quota):,} steps/day, from {f.plan_source}")
        if f.mean_daily_steps is not None:
            share = f" ({f.adherence:.0%} of quota)" if f.adherence is not None else ""
            lines.append(f"- Mean daily steps {week}: {f.mean_daily_steps:,.0f} over {f.step_days_last7} days{share}")
    if f.pain_now is not None and f.pain_baseline is not None:
        lines.append(f"- Pain ({f.pain_scale}): now {f.pain_now:.1f} (last 7 days, {f.pain_readings[0]} readings) "
                     f"against baseline {f.pain_baseline:.1f} (days 8-28, {f.pain_readings[1]} readings)")
    elif f.days_since_pain is None:
        lines.append("- Pain: no scores recorded")
    if f.flare or f.flare_weeks:
        lines.append(f"- Flare now: {'yes' if f.flare else 'no'}; flare weeks in the last 4: {f.flare_weeks}")
    if f.acwr is not None:
        lines.append(f"- Acute:chronic activity ratio: {f.acwr:.2f}")
    if f.inactive_reason:
        lines.append(f"- Inactivity: {f.inactive_reason}")
    if f.days_since_activity is not None:
        pain = "never" if f.days_since_pain is None else _days_ago(f.days_since_pain)
        lines.append(f"- Last activity recorded {_days_ago(f.days_since_activity)}; last pain score {pain}")
    if ctx.record.skipped:
        count = len(ctx.record.skipped)
        lines.append(f"- Not used: {count} {'item' if count == 1 else 'items'} (status, unit or date not usable)")
    return "\n".join(lines)


def red_flag_lines(findings: list[Fired], ctx: CardContext) -> str:
    lines = []
    for finding in findings:
        for fact in finding.facts.values():
            if fact.get("t") == "condition":
                recorded = f", recorded {fact['days_since_recorded']} days ago" if "days_since_recorded" in fact else ""
                lines.append(f"- {FLAG_WORDS.get(fact['red_flag'], fact['red_flag']).capitalize()} "
                             f"(SNOMED {fact['code']}){recorded}")
            elif finding.rule_id == "red-flag-blood-pressure":
                lines.append(f"- Latest resting blood pressure {_number(fact.get('systolic', 0))}/"
                             f"{_number(fact.get('diastolic', 0))} mmHg (last 30 days)")
            elif finding.rule_id == "red-flag-fever":
                lines.append(f"- Temperature up to {fact['temperature_max']:.1f} Cel in the last 7 days")
            elif finding.rule_id == "red-flag-weight-loss":
                lines.append(f"- Weight down {fact['weight_loss_percent']:.1f} % within 12 months")
    return "\n".join(dict.fromkeys(lines))


# ---------------------------------------------------------------- FHIR resources suggested


def _service_request(ctx: CardContext, code: tuple[str, str], rid: str, instruction: str, dose: Dose | None = None,
                     replaces: str | None = None) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "ServiceRequest", "id": rid, "meta": {"profile": [PA_SERVICE_REQUEST]},
        "status": "draft", "intent": "order",
        "code": {"coding": [{"system": SNOMED, "code": code[0], "display": code[1]}]},
        "subject": {"reference": f"Patient/{ctx.patient_id}"},
        "patientInstruction": instruction,
    }
    if dose is not None:
        resource["occurrenceTiming"] = {"repeat": {"frequency": dose.per_week, "period": 1, "periodUnit": "wk",
                                                   "duration": dose.minutes, "durationUnit": "min"}}
        resource["performer"] = [{"reference": f"Patient/{ctx.patient_id}"}]
    reason = ctx.record.chronic_pain_condition
    if reason:
        resource["reasonReference"] = [{"reference": reason}]
    if replaces:
        resource["replaces"] = [{"reference": replaces}]
    return ServiceRequest.model_validate(resource).model_dump(mode="json", exclude_none=True)


def _goal(ctx: CardContext, rid: str, steps: int) -> dict[str, Any]:
    resource = {
        "resourceType": "Goal", "id": rid, "meta": {"profile": [PA_GOAL]}, "lifecycleStatus": "proposed",
        "description": {"text": f"Walk {steps:,} steps a day, every day, whatever the pain"},
        "subject": {"reference": f"Patient/{ctx.patient_id}"},
        "target": [{"measure": {"coding": [{"system": LOINC, "code": "41950-7",
                                             "display": "Number of steps in 24 hour Measured"}]},
                    "detailQuantity": {"value": steps, "unit": "steps/day", "system": UCUM, "code": "/d"}}],
    }
    return Goal.model_validate(resource).model_dump(mode="json", exclude_none=True)


def _instruction(dose: Dose) -> str:
    return (f"Exercise for {dose.minutes} minutes, {dose.per_week} times a week, on set days, whatever the pain; "
            f"stop at the time, not at the pain.")


def _dose_suggestion(ctx: CardContext, finding: Fired, rec: Recommendation) -> list[Suggestion]:
    rid = card_uuid(ctx.hook_instance, finding.rule_id, "resource")
    sid = card_uuid(ctx.hook_instance, finding.rule_id, "suggestion")
    if rec.quota is not None:
        goal = _goal(ctx, rid, rec.quota)
        return [Suggestion(label=f"Set a quota of {rec.quota:,} steps/day", uuid=sid, isRecommended=True,
                           actions=[Action(type="create", description=f"Propose the goal {rec.quota:,} steps/day",
                                           resource=goal)])]
    if rec.dose is not None:
        current = ctx.record.current_order
        resource = _service_request(ctx, EXERCISE_THERAPY, rid, _instruction(rec.dose), rec.dose,
                                    current.reference if current else None)
        return [Suggestion(label=f"Order {rec.dose.words()}", uuid=sid, isRecommended=True,
                           actions=[Action(type="create", description=f"Draft an exercise order of {rec.dose.words()}"
                                           + (f" replacing {current.reference}" if current else ""),
                                           resource=resource)])]
    return []


def _simple_order(ctx: CardContext, finding: Fired, code: tuple[str, str], label: str, instruction: str
                  ) -> list[Suggestion]:
    rid = card_uuid(ctx.hook_instance, finding.rule_id, finding.subject or "", "resource")
    resource = _service_request(ctx, code, rid, instruction)
    return [Suggestion(label=label, uuid=card_uuid(ctx.hook_instance, finding.rule_id, finding.subject or "",
                                                   "suggestion"),
                       isRecommended=True, actions=[Action(type="create", description=label, resource=resource)])]


def _paced_update(ctx: CardContext, finding: Fired, review: OrderReview) -> list[Suggestion]:
    draft = ctx.drafts.get(review.order.reference)
    if draft is None or review.paced is None:
        return []
    updated = dict(draft)
    timing = dict(updated.get("occurrenceTiming") or {})
    timing["repeat"] = {**(timing.get("repeat") or {}), "frequency": review.paced.per_week, "period": 1,
                        "periodUnit": "wk", "duration": review.paced.minutes, "durationUnit": "min"}
    updated["occurrenceTiming"] = timing
    updated["patientInstruction"] = _instruction(review.paced)
    resource = ServiceRequest.model_validate(updated).model_dump(mode="json", exclude_none=True)
    label = f"Change the order to {review.paced.words()}"
    return [Suggestion(label=label, uuid=card_uuid(ctx.hook_instance, finding.rule_id, review.order.reference,
                                                   "suggestion"),
                       isRecommended=True, actions=[Action(type="update", description=label, resource=resource)])]


# ---------------------------------------------------------------- cards


def build_cards(evaluation: Evaluation, ctx: CardContext) -> list[Card]:
    """One card per recommendation: the dose card, then one per draft order, then the patterns."""
    groups: dict[tuple[str, str | None], list[Fired]] = {}
    for finding in evaluation.findings:
        groups.setdefault((finding.code, finding.subject if finding.kind == "order" else None), []).append(finding)
    return [_card(findings, ctx) for findings in groups.values()]


def _values(findings: list[Fired], ctx: CardContext) -> dict[str, str]:
    f = ctx.features
    values = {name: _number(value) for name, value in ctx.params.items()}
    rec = ctx.recommendation if ctx.recommendation and ctx.recommendation.code == findings[0].code else None
    values.update({
        "activity": "daily steps" if f.measure == "steps" else "exercise",
        "current_dose": current_words(f),
        "dose": rec.words(f) if rec else current_words(f),
        "change": (rec.change if rec and rec.change else ""),
        "reason": (rec.reason if rec and rec.reason else ""),
        "data": ctx.data,
        "red_flags": red_flag_lines(findings, ctx),
        "action": ("Do not progress exercise; evaluate the red flag first." if ctx.service_id == "pacing-review"
                   else "Hold the draft exercise order until the red flag is evaluated, or make it a referral."),
    })
    review = ctx.reviews.get(findings[0].subject or "")
    if review is not None:
        proposed = review.proposed
        values["order"] = f"{review.order.reference}" + (f" ({proposed.words()})" if proposed else "")
        values["proposed"] = f"{proposed.words()}" if proposed else "an undosed order"
        values["dose"] = review.paced.words() if review.paced else "a paced dose"
        if review.tolerated_weekly and proposed:
            jump = proposed.weekly / review.tolerated_weekly - 1
            values["data"] = (f"- Proposed: {proposed.weekly} min/week; tolerated or planned: "
                              f"{review.tolerated_weekly:.0f} min/week ({jump:+.0%})"
                              + ("\n" + ctx.data if ctx.data else ""))
    return values


def _suggestions(findings: list[Fired], ctx: CardContext) -> list[Suggestion]:
    finding, code = findings[0], findings[0].code
    if code in ("start", "progress", "step-back") and ctx.recommendation is not None:
        return _dose_suggestion(ctx, finding, ctx.recommendation)
    if code in ("data-gap", "re-baseline", "order-no-baseline"):
        return _simple_order(ctx, finding, TOLERANCE, "Order an activity tolerance assessment",
                             "We will check how much activity you can do comfortably before setting your plan.")
    if code == "inactivity":
        return _simple_order(ctx, finding, EXERCISE_REFERRAL, "Refer to a supervised group exercise programme",
                             "Join a supervised group exercise programme to build up activity safely.")
    if code == "order-dose-jump":
        review = ctx.reviews.get(finding.subject or "")
        return _paced_update(ctx, finding, review) if review else []
    if code == "red-flag":
        suggestions = _simple_order(ctx, finding, PATIENT_REFERRAL, "Refer for evaluation of the red flag",
                                    "Your clinician will arrange an assessment before any change to your exercise.")
        if ctx.drafts:
            suggestions.append(Suggestion(
                label="Remove the draft exercise order", uuid=card_uuid(ctx.hook_instance, "red-flag", "remove"),
                actions=[Action(type="delete", description=f"Remove {ref}", resourceId=ref) for ref in ctx.drafts]))
        return suggestions
    return []


def _card(findings: list[Fired], ctx: CardContext) -> Card:
    first = findings[0]
    rule = ctx.knowledge.rule(first.rule_id).rule
    values = _values(findings, ctx)
    info = ctx.knowledge.info
    evidence = "; ".join(dict.fromkeys(c for f in findings
                                       for c in ctx.knowledge.rule(f.rule_id).rule.evidence.citations))
    notes = [ctx.knowledge.rule(f.rule_id).rule.evidence.note for f in findings]
    derived = "; ".join(n for n in dict.fromkeys(notes) if n)
    rules = ", ".join(dict.fromkeys(f"`{f.rule_id}` v{f.rule_version}" for f in findings))
    footer = f"---\nRule {rules}, {info.name} {ctx.knowledge.version}. Evidence: {evidence}."
    if derived:
        footer += f" Derived: {derived}."
    detail = "\n\n".join(part for part in (_fill(rule.conclude.detail, values), footer) if part)
    suggestions = _suggestions(findings, ctx)
    subject = first.subject or ""
    return Card(
        uuid=card_uuid(ctx.hook_instance, first.code, subject),
        summary=_clip(_fill(rule.conclude.summary, values)),
        detail=detail,
        indicator=rule.conclude.indicator,
        source=Source(label=f"{info.name} {ctx.knowledge.version}",
                      topic=Coding(system=info.code_system, code=first.code,
                                   display=first.code.replace("-", " ").capitalize())),
        suggestions=suggestions or None,
        selectionBehavior=("any" if first.code == "red-flag" else "at-most-one") if suggestions else None,
        overrideReasons=[OverrideReasonCoding(system=info.override_reason_system, code=r.code, display=r.display)
                         for r in info.override_reasons],
    )
