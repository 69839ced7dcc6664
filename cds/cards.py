"""Findings -> CDS Hooks cards (docs/clinical.md, what a card says). Pure: no I/O, no clock; uuids derive from the
hookInstance and the rule, so the same request gives the same response. The words, codes and kinds of suggestion
come from the rule that fired (rules/<recommendation>/rule.yaml); Python builds each kind of suggestion."""

from __future__ import annotations

import hashlib
import string
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from functools import cached_property, lru_cache
from types import MappingProxyType
from typing import Any, Literal, cast

from fhir.resources.R4B.goal import Goal
from fhir.resources.R4B.servicerequest import ServiceRequest

from cds.clinical.features import MONTHS, Features, day_words
from cds.clinical.orders import OrderReview
from cds.clinical.recommend import Recommendation, current_words
from cds.clinical.records import Dose, PatientRecord
from cds.engine import Evaluation, Fired, Knowledge
from cds.fhir import drafts
from cds.hooks.models import Action, Card, Coding, OverrideReasonCoding, Source, Suggestion
from cds.knowledge.conditions import matches
from cds.knowledge.schema import Suggestion as SuggestionSpec
from cds.knowledge.schema import template_texts

PA_SERVICE_REQUEST = "http://hl7.org/fhir/us/physical-activity/StructureDefinition/pa-servicerequest"
PA_GOAL = "http://hl7.org/fhir/us/physical-activity/StructureDefinition/pa-goal"
# pa-servicerequest allows only a (US Core) Practitioner or PractitionerRole as requester.
REQUESTER_TYPES = ("Practitioner", "PractitionerRole")


@dataclass
class CardContext:
    """What the card builder needs besides the findings."""

    hook_instance: str
    service_id: str
    hook: str
    patient_id: str
    knowledge: Knowledge
    features: Features
    record: PatientRecord
    params: Mapping[str, float]
    recommendation: Recommendation | None = None
    reviews: dict[str, OrderReview] = field(default_factory=dict)
    drafts: dict[str, dict[str, Any]] = field(default_factory=dict)  # Type/id -> draft resource
    groups: dict[str, list[Fired]] = field(default_factory=dict)  # first finding's rule id -> its card's findings
    facts: list[dict[str, Any]] = field(default_factory=list)  # the facts the rules were given
    rules_url: str | None = None  # the rules page; a card's source links to its rule there
    user_id: str | None = None  # the hook's context.userId ("Practitioner/123"); the panel worklist has none

    def findings_of(self, first: Fired) -> list[Fired]:
        return self.groups.get(first.rule_id + (first.subject or ""), [first])

    @cached_property
    def numbers(self) -> Mapping[str, Number]:
        """The parameters as card text writes them: built once per rule set when they are its values, else once
        per call."""
        if self.params is self.knowledge.values:
            return self.knowledge.derived("card numbers", _numbers)
        return _numbers_of(self.params)

    @cached_property
    def data(self) -> str:
        """The data lines behind the cards, the same for every card of the call: built once."""
        return data_lines(self)


def _numbers_of(params: Mapping[str, float]) -> Mapping[str, Number]:
    return MappingProxyType({name: Number(value) for name, value in params.items()})


def _numbers(knowledge: Knowledge) -> Mapping[str, Number]:
    return _numbers_of(knowledge.values)


def card_uuid(hook_instance: str, *parts: str) -> str:
    """str(uuid.uuid5(uuid.NAMESPACE_URL, name)) for a name made of the parts, written without uuid.UUID (whose
    constructor and text cost more than the SHA-1): the same 16 bytes, version 5 and the RFC 4122 variant set."""
    name = "pacing-cds:" + ":".join((hook_instance, *parts))
    digest = bytearray(hashlib.sha1(_URL_NAMESPACE + name.encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    text = digest.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


_URL_NAMESPACE = uuid.NAMESPACE_URL.bytes


class Number(float):
    """A parameter in card text: plain ("38", "0.8") without a format spec, and formatted with one ("{:.0%}")."""

    def __format__(self, spec: str) -> str:
        return format(float(self), spec) if spec else f"{float(self):g}"


@lru_cache(maxsize=4096)
def _names(template: str) -> frozenset[str]:
    """The names a template fills in, parsed once per template (the templates are the rule set's)."""
    return frozenset(name for _, name, _, _ in string.Formatter().parse(template) if name)


def _fill(template: str, values: Mapping[str, Any]) -> str:
    """A card template filled in: blocks apart by a blank line; a paragraph's wrapped lines joined into one, list
    lines ("- ...") kept one per line; empty blocks left out."""
    text = template.format(**{name: values.get(name, "") for name in _names(template)})
    blocks = []
    for block in text.strip().split("\n\n"):
        lines: list[str] = []
        for line in (raw.strip() for raw in block.splitlines()):
            if not line:
                continue
            if lines and not line.startswith("- ") and not lines[-1].startswith("- "):
                lines[-1] += " " + line
            else:
                lines.append(line)
        if lines:
            blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def render(template: str | list[str] | None, values: Mapping[str, Any]) -> str:
    """A template, or its segments: a segment naming a value that is absent is left out."""
    return "".join(segment.format(**{n: values[n] for n in names})
                   for segment in template_texts(template)
                   for names in (_names(segment),) if all(n in values for n in names))


def _clip(summary: str) -> str:
    return summary if len(summary) < 140 else summary[:136].rstrip() + "..."


# ---------------------------------------------------------------- the data behind a card


def done_words(f: Features) -> str:
    """What was done in the last 7 days: minutes a week, or mean steps a day."""
    if f.weekly_minutes is not None and (f.measure == "minutes" or f.mean_daily_steps is None):
        return f"{f.weekly_minutes:.0f} min/week"
    return f"{f.mean_daily_steps:,.0f} steps/day" if f.mean_daily_steps is not None else "the current activity"


def _days_ago(days: int) -> str:
    return "today" if days == 0 else "yesterday" if days == 1 else f"{days} days ago"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _week_words(today: date) -> str:
    first = today - timedelta(days=6)
    return (f"{first.day}-{today.day} {MONTHS[today.month - 1]}" if first.month == today.month
            else f"{day_words(first)} - {day_words(today)}")


def _since(start: datetime | None) -> str:
    return f" since {day_words(start)}" if start is not None else ""


def _plan_words(ctx: CardContext) -> str:
    """Where the plan comes from, in words: never a FHIR id."""
    f, record = ctx.features, ctx.record
    current = record.current_order
    if f.measure == "minutes" and current is not None and (f.plan_source == current.reference or f.dose_unread):
        what = "the care plan" if current.reference.startswith("CarePlan/") else "the current order"
        return f"{what}{_since(current.start)}"
    if f.measure == "steps" and record.step_goal is not None and f.plan_source == record.step_goal.reference:
        return f"the step goal{_since(record.step_goal.start)}"
    return f.plan_source or "no plan"


def _activity_line(ctx: CardContext) -> str | None:
    f = ctx.features
    week = _week_words(f.now.date())
    if f.measure == "minutes":
        current = ctx.record.current_order
        if f.dose_unread and current is not None:
            plan = f"Plan: {_plan_words(ctx)} has no dose that can be read"
        elif f.has_prescription and f.plan:
            plan = f"Plan {f.plan.words()} ({f.plan.weekly} min; {_plan_words(ctx)})"
        else:
            plan = "No plan"
        if f.weekly_minutes is None and not f.untimed_last7:
            return f"- {plan}; nothing recorded {week}" if f.has_prescription else None
        if f.untimed_last7:
            done = f"{_plural(f.sessions_last7, 'session')}, {f.untimed_last7} without a duration (counted by sessions)"
        elif ctx.record.sessions:
            done = f"{f.weekly_minutes:.0f} min in {_plural(f.sessions_last7, 'session')}"
        else:
            done = f"{f.weekly_minutes:.0f} min/week (Exercise Vital Sign)"
        share = f" ({f.adherence:.0%})" if f.adherence is not None and f.has_prescription else ""
        return f"- {plan}; done {week}: {done}{share}"
    if f.dose_unread and ctx.record.step_goal is not None:
        plan = f"Plan: the step goal{_since(ctx.record.step_goal.start)} names no number of steps that can be read"
    else:
        plan = f"Quota {round(f.quota):,} steps/day ({_plan_words(ctx)})" if f.has_prescription and f.quota \
            else "No plan"
    if f.mean_daily_steps is None:
        return f"- {plan}; no steps recorded {week}" if f.has_prescription else None
    share = f" ({f.adherence:.0%})" if f.adherence is not None and f.has_prescription else ""
    return f"- {plan}; {week}: {f.mean_daily_steps:,.0f} steps/day over {_plural(f.step_days_last7, 'day')}{share}"


def _pain_line(ctx: CardContext) -> str:
    f = ctx.features
    if f.pain_now is not None and f.pain_baseline is not None:
        now, before = f.pain_readings
        line = (f"- Pain ({f.pain_scale}) {f.pain_now:.1f} this week against {f.pain_baseline:.1f} before "
                f"({now} and {_plural(before, 'score')})")
    elif f.days_since_pain is None:
        line = "- Pain: no scores recorded"
    else:
        line = f"- Pain: too few scores to compare (last {_days_ago(f.days_since_pain)})"
    if f.flare:
        line += "; flare now"
    if f.flare_weeks:
        line += f"; {_plural(f.flare_weeks, 'flare week')} of the last 4"
    if f.peg_unconfirmed:
        line += "; one PEG rise, unconfirmed"
    return line


def data_lines(ctx: CardContext) -> str:
    """The numbers behind the cards, with dates, in a few short lines (the same for every card of the call)."""
    f, params = ctx.features, ctx.params
    lines = [line for line in (_activity_line(ctx), _pain_line(ctx)) if line]
    if f.acwr is not None and f.acwr > params["acwr_progression_cap"]:
        lines.append(f"- Last 7 days against the 28-day level: {f.acwr:.2f}†")
    if f.inactive_reason:
        lines.append(f"- Inactive: {f.inactive_reason}")
    stale = params["recent_days"]
    if f.days_since_activity is not None and (f.days_since_activity >= stale or (f.days_since_pain or 0) >= stale):
        pain = "never" if f.days_since_pain is None else _days_ago(f.days_since_pain)
        lines.append(f"- Last activity {_days_ago(f.days_since_activity)}; last pain score {pain}")
    info = ctx.knowledge.info
    if f.age_assumed:
        lines.append(f"- {info.data_lines['age_not_recorded']}")
    if f.unread_needed:  # only what the dose could rest on: data the recommendation does not need is not named
        what = ", ".join(info.unread_words.get(t, t) for t in f.unread_needed)  # type: ignore[call-overload]
        lines.append("- " + info.data_lines["could_not_be_read"].format(what=what))
    if f.set_aside:
        reasons = ctx.record.readings_set_aside()
        why = reasons[0][0] if len(reasons) == 1 else ", ".join(f"{count} {reason}" for reason, count in reasons)
        lines.append(f"- Set aside: {_plural(f.set_aside, 'reading')} ({why})")
    return "\n".join(lines)


def note_lines(ctx: CardContext, code: str) -> list[str]:
    """The notes of the value sets the patient's conditions fall in (conditions that are no red flag alone), as the
    card of recommendation `code` shows them: a value set may leave its note out of some cards."""
    notes = []
    for fact in ctx.facts:
        value_set = ctx.knowledge.value_sets.get(str(fact.get("value_set")))
        if value_set is None or value_set.note is None or code in value_set.note_not_with:
            continue
        if fact.get("clinical") == "history":  # over: its note only where the value set keeps it for the past
            if value_set.note_history:
                notes.append(f"- {value_set.note}")
            continue
        after = ctx.params.get(value_set.note_after) if value_set.note_after else None
        if after is None or fact.get("days_since_recorded", 0) > after:
            notes.append(f"- {value_set.note}")
    return list(dict.fromkeys(notes))


def finding_lines(findings: list[Fired], ctx: CardContext) -> list[str]:
    """One line per fact a rule matched, from the rule's `finding` template (a red flag, a precaution)."""
    lines = []
    value_sets = ctx.knowledge.value_sets
    for finding in findings:
        templates = ctx.knowledge.rule(finding.rule_id).rule.conclude.findings
        for fact in finding.facts.values():
            values: dict[str, Any] = {**ctx.params, **fact}
            if fact.get("value_set") in value_sets:
                values["red_flag_label"] = value_sets[fact["value_set"]].name
            if fact.get("t") == "condition" and "days_since_recorded" not in fact:
                values["undated"] = ""
            lines += [line for line in (render(t, values) for t in templates) if line]
    return list(dict.fromkeys(lines))


def red_flag_lines(findings: list[Fired], ctx: CardContext) -> str:
    return "\n".join(finding_lines(findings, ctx))


def reason_text(findings: list[Fired], ctx: CardContext) -> str:
    """The rule's reasons whose test the matched facts pass, joined; else its `no_reason`."""
    texts = []
    for finding in findings:
        compiled = ctx.knowledge.rule(finding.rule_id)
        fact = {k: v for matched in finding.facts.values() for k, v in matched.items()}
        values = {**ctx.numbers, **fact}
        texts += [text.format(**values) for when, text in compiled.reasons if matches(when, fact)]
    if texts:
        return " and ".join(dict.fromkeys(texts))
    return ctx.knowledge.rule(findings[0].rule_id).rule.conclude.no_reason or ""


# ---------------------------------------------------------------- FHIR resources suggested


def _pa_category(ctx: CardContext) -> dict[str, Any]:
    codes = ctx.knowledge.codes
    return {"coding": [codes.coding(codes.pa_category)]}


def _requester(ctx: CardContext) -> dict[str, str] | None:
    """The hook's user as the requester, when the profile allows its type; none without a user."""
    if ctx.user_id and ctx.user_id.split("/", 1)[0] in REQUESTER_TYPES:
        return {"reference": ctx.user_id}
    return None


def _reason(ctx: CardContext, sources: list[str]) -> dict[str, Any]:
    """reasonReference to the sources, else to the chronic-pain Condition; else the coded reason (pa-sr-1 wants one)."""
    condition = ctx.record.chronic_pain_condition
    references = sources or ([condition] if condition else [])
    if references:
        return {"reasonReference": [{"reference": r} for r in references]}
    codes = ctx.knowledge.codes
    return {"reasonCode": [{"coding": [codes.coding(codes.draft_reason)]}]}


def _service_request(ctx: CardContext, code: dict[str, str], rid: str, instruction: str, dose: Dose | None = None,
                     replaces: str | None = None, reasons: list[str] | None = None,
                     priority: str | None = None) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "ServiceRequest", "id": rid, "meta": {"profile": [PA_SERVICE_REQUEST]},
        "status": "draft", "intent": "order", "category": [_pa_category(ctx)], "code": {"coding": [code]},
        "subject": {"reference": f"Patient/{ctx.patient_id}"}, "authoredOn": ctx.features.now.isoformat(),
        "patientInstruction": instruction, **_reason(ctx, reasons or []),
    }
    requester = _requester(ctx)
    if requester:
        resource["requester"] = requester
    if dose is not None:
        resource["occurrenceTiming"] = {"repeat": {"frequency": dose.per_week, "period": 1, "periodUnit": "wk",
                                                   "duration": dose.minutes, "durationUnit": "min"}}
        resource["performer"] = [{"reference": f"Patient/{ctx.patient_id}"}]
    if priority:
        resource["priority"] = priority
    if replaces:
        resource["replaces"] = [{"reference": replaces}]
    return drafts.service_request(resource)


def _conformed_draft(ctx: CardContext, draft: dict[str, Any]) -> dict[str, Any]:
    """An order hook's draft with what pa-servicerequest requires and it lacks (the profile, the PhysicalActivity
    category, authoredOn, requester, a reason); what the draft has is kept."""
    updated = dict(draft)
    profiles = list((updated.get("meta") or {}).get("profile") or [])
    if PA_SERVICE_REQUEST not in profiles:
        updated["meta"] = {**(updated.get("meta") or {}), "profile": [*profiles, PA_SERVICE_REQUEST]}
    wanted = _pa_category(ctx)
    pa = wanted["coding"][0]
    categories = list(updated.get("category") or [])
    if not any(c.get("system") == pa["system"] and c.get("code") == pa["code"]
               for concept in categories for c in concept.get("coding") or []):
        updated["category"] = [*categories, wanted]
    updated.setdefault("authoredOn", ctx.features.now.isoformat())
    requester = _requester(ctx)
    if requester and not updated.get("requester"):
        updated["requester"] = requester
    if not updated.get("reasonCode") and not updated.get("reasonReference"):
        updated.update(_reason(ctx, []))
    return updated


def _goal(ctx: CardContext, rid: str, steps: int, text: str) -> dict[str, Any]:
    codes = ctx.knowledge.codes
    due = ctx.features.now.date() + timedelta(days=int(ctx.params["goal_due_days"]))
    resource = {
        "resourceType": "Goal", "id": rid, "meta": {"profile": [PA_GOAL]}, "lifecycleStatus": "proposed",
        "category": [_pa_category(ctx)], "description": {"text": text},
        "subject": {"reference": f"Patient/{ctx.patient_id}"},
        "target": [{"measure": {"coding": [codes.coding(codes.step_goal_target)]},
                    "detailQuantity": {"value": steps, "unit": "steps/day", "system": codes.systems["ucum"],
                                       "code": "/d"},
                    "dueDate": due.isoformat()}],
    }
    return Goal.model_validate(resource).model_dump(mode="json", exclude_none=True)


def _dose_words(dose: Dose) -> dict[str, Any]:
    return {"dose": dose.words(), "minutes": dose.minutes, "per_week": dose.per_week}


# ---------------------------------------------------------------- suggestions, by kind

SuggestionBuilder = Callable[[CardContext, Fired, SuggestionSpec], list[Suggestion]]


def _dose_suggestion(ctx: CardContext, finding: Fired, spec: SuggestionSpec) -> list[Suggestion]:
    """The recommended dose: a step Goal for a steps-only patient, else a draft exercise ServiceRequest."""
    rec = ctx.recommendation
    if rec is None or rec.code != finding.code:
        return []
    rid = card_uuid(ctx.hook_instance, finding.rule_id, "resource")
    sid = card_uuid(ctx.hook_instance, finding.rule_id, "suggestion")
    if rec.quota is not None:
        values = {"dose": rec.words(ctx.features), "dose_quota": f"{rec.quota:,}"}
        goal = _goal(ctx, rid, rec.quota, render(spec.goal_text, values))
        return [Suggestion(label=render(spec.goal_label, values), uuid=sid, isRecommended=True,
                           actions=[Action(type="create", description=render(spec.goal_description, values),
                                           resource=goal)])]
    if rec.dose is None:
        return []
    current = ctx.record.current_order
    values = _dose_words(rec.dose)
    if current:
        values["current_order"] = current.reference
    codes = ctx.knowledge.codes
    resource = _service_request(ctx, codes.coding(codes.orderables["exercise-therapy"]), rid,
                                render(spec.instruction, values), rec.dose,
                                current.reference if current and current.reference.startswith("ServiceRequest/")
                                else None)
    return [Suggestion(label=render(spec.label, values), uuid=sid, isRecommended=True,
                       actions=[Action(type="create", description=render(spec.description, values),
                                       resource=resource)])]


def _order_suggestion(ctx: CardContext, finding: Fired, spec: SuggestionSpec) -> list[Suggestion]:
    """A draft ServiceRequest for an orderable of codes.yaml: an assessment or a referral."""
    codes = ctx.knowledge.codes
    subject = finding.subject or ""
    rid = card_uuid(ctx.hook_instance, finding.rule_id, subject, "resource")
    found = finding_lines(ctx.findings_of(finding), ctx)
    values = {**ctx.params, **({"finding": found[0].removeprefix("- ")} if found else {})}
    label = render(spec.label, values) or render(spec.label, {**values, "finding": "the red flag"})
    sources = list(dict.fromkeys(str(f["source"]) for g in ctx.findings_of(finding) for f in g.facts.values()
                                 if "source" in f))
    resource = _service_request(ctx, codes.coding(codes.orderables[spec.orderable or ""]), rid,
                                render(spec.instruction, values), reasons=sources, priority=spec.priority)
    return [Suggestion(label=label, uuid=card_uuid(ctx.hook_instance, finding.rule_id, subject, "suggestion"),
                       isRecommended=True, actions=[Action(type="create", description=label, resource=resource)])]


def _update_draft(ctx: CardContext, finding: Fired, spec: SuggestionSpec) -> list[Suggestion]:
    """The draft order under review, changed to the paced dose."""
    review = ctx.reviews.get(finding.subject or "")
    draft = ctx.drafts.get(review.order.reference) if review else None
    paced = review.target(ctx.knowledge.rule(finding.rule_id).rule.conclude.dose) if review else None
    if review is None or draft is None or paced is None:
        return []
    values = _dose_words(paced)
    updated = _conformed_draft(ctx, draft)
    timing = dict(updated.get("occurrenceTiming") or {})
    timing["repeat"] = {**(timing.get("repeat") or {}), "frequency": paced.per_week, "period": 1,
                        "periodUnit": "wk", "duration": paced.minutes, "durationUnit": "min"}
    updated["occurrenceTiming"] = timing
    updated["patientInstruction"] = render(spec.instruction, values)
    resource = ServiceRequest.model_validate(updated).model_dump(mode="json", exclude_none=True)
    label = render(spec.label, values)
    return [Suggestion(label=label, uuid=card_uuid(ctx.hook_instance, finding.rule_id, review.order.reference,
                                                   "suggestion"),
                       isRecommended=True, actions=[Action(type="update", description=label, resource=resource)])]


def _remove_drafts(ctx: CardContext, finding: Fired, spec: SuggestionSpec) -> list[Suggestion]:
    """Delete the draft exercise orders of an order hook (none at patient-view)."""
    if not ctx.drafts:
        return []
    return [Suggestion(label=render(spec.label, ctx.params), uuid=card_uuid(ctx.hook_instance, finding.code, "remove"),
                       actions=[Action(type="delete", description=render(spec.description, {"draft": ref}),
                                       resourceId=ref) for ref in ctx.drafts])]


SUGGESTIONS: dict[str, SuggestionBuilder] = {
    "dose": _dose_suggestion, "order": _order_suggestion, "update-draft": _update_draft,
    "remove-drafts": _remove_drafts,
}


# ---------------------------------------------------------------- cards


def card_groups(findings: Iterable[Fired]) -> list[list[Fired]]:
    """The findings of each card, in card order: one card per recommendation code (and per draft order)."""
    groups: dict[tuple[str, str | None], list[Fired]] = {}
    for finding in findings:
        groups.setdefault((finding.code, finding.subject if finding.kind == "order" else None), []).append(finding)
    return list(groups.values())


def build_cards(evaluation: Evaluation, ctx: CardContext) -> list[Card]:
    """One card per recommendation: the dose card, then one per draft order, then the patterns."""
    groups = card_groups(evaluation.findings)
    ctx.groups = {findings[0].rule_id + (findings[0].subject or ""): findings for findings in groups}
    return [_card(findings, ctx) for findings in groups]


def build_silent_cards(evaluation: Evaluation, ctx: CardContext,
                       recommendation: Callable[[Fired], Recommendation | None]) -> list[tuple[Card, Fired]]:
    """The card each rule in silent mode would have shown (one per rule and draft order, so that each rule's firing
    is counted apart), with its first finding. `recommendation` gives a dose finding's dose. Its uuid is its own, so
    that it never takes the place of a live card's in the audit."""
    built: list[tuple[Card, Fired]] = []
    by_rule: dict[tuple[str, str | None], list[Fired]] = {}
    for finding in evaluation.silent:
        by_rule.setdefault((finding.rule_id, finding.subject), []).append(finding)
    for (rule_id, subject), findings in by_rule.items():
        first = findings[0]
        own = replace(ctx, recommendation=recommendation(first) if first.kind == "dose" else None,
                      groups={rule_id + (subject or ""): findings})
        built.append((_card(findings, own, card_uuid(ctx.hook_instance, "silent", rule_id, subject or "")), first))
    return built


def _values(findings: list[Fired], ctx: CardContext) -> dict[str, Any]:
    f = ctx.features
    compiled = ctx.knowledge.rule(findings[0].rule_id)
    values: dict[str, Any] = dict(ctx.numbers)
    rec = ctx.recommendation if ctx.recommendation and ctx.recommendation.code == findings[0].code else None
    values.update({
        "activity": ctx.knowledge.info.activity_words[f.measure],
        "current_dose": current_words(f),
        "dose": rec.words(f) if rec else current_words(f),
        "change": (rec.change if rec and rec.change else ""),
        "reason": reason_text(findings, ctx),
        "data": "\n".join([ctx.data, *note_lines(ctx, findings[0].code)]).strip("\n"),
        "red_flags": red_flag_lines(findings, ctx),
        "review_date": day_words(f.now + timedelta(days=f.review_days(ctx.params))),
        "done": done_words(f),
    })
    values.update({name: by_hook.get(ctx.hook, "") for name, by_hook in compiled.words.items()})
    review = ctx.reviews.get(findings[0].subject or "")
    if review is not None:
        proposed = review.proposed
        values["order"] = "the draft order" + (f" ({proposed.words()})" if proposed else "")
        values["proposed"] = f"{proposed.words()}" if proposed else "an undosed order"
        target = review.target(compiled.rule.conclude.dose)
        values["dose"] = target.words() if target else "a paced dose"
        if review.tolerated_weekly and proposed:
            jump = proposed.weekly / review.tolerated_weekly - 1
            values["data"] = (f"- Proposed: {proposed.weekly} min/week; tolerated or planned: "
                              f"{review.tolerated_weekly:.0f} min/week ({jump:+.0%})"
                              + ("\n" + values["data"] if values["data"] else ""))
    return values


Indicator = Literal["info", "warning", "critical"]
SEVERITY: dict[Indicator, int] = {"info": 0, "warning": 1, "critical": 2}


def _indicator(findings: list[Fired], ctx: CardContext) -> Indicator:
    """The most severe indicator of the card's rules at this hook."""
    conclusions = [ctx.knowledge.rule(f.rule_id).rule.conclude for f in findings]
    hook = cast(Literal["patient-view", "order-select", "order-sign"], ctx.hook)
    return max((c.indicator_at.get(hook, c.indicator) for c in conclusions), key=SEVERITY.__getitem__)


def _card(findings: list[Fired], ctx: CardContext, card_id: str | None = None) -> Card:
    first = findings[0]
    rule = ctx.knowledge.rule(first.rule_id).rule
    values = _values(findings, ctx)
    info = ctx.knowledge.info
    rules_fired = [ctx.knowledge.rule(f.rule_id).rule for f in findings]
    evidence = "; ".join(dict.fromkeys(c for r in rules_fired for c in r.evidence.citations))
    rules = ", ".join(dict.fromkeys(f"`{f.rule_id}` v{f.rule_version}" for f in findings))
    footer = f"Evidence: {evidence}. Rule {rules}, {info.name} {ctx.knowledge.version}."
    body = _fill(rule.conclude.detail, values)
    if "†" in body:
        footer += "\n† our threshold, not a guideline figure"
    detail = "\n\n".join(part for part in (body, footer) if part)
    suggestions = [s for spec in rule.conclude.suggest for s in SUGGESTIONS[spec.kind](ctx, first, spec)]
    return Card(
        uuid=card_id or card_uuid(ctx.hook_instance, first.code, first.subject or ""),
        summary=_clip(_fill(rule.conclude.summary, values)),
        detail=detail,
        indicator=_indicator(findings, ctx),
        source=Source(label=f"{info.name} {ctx.knowledge.version}",
                      url=f"{ctx.rules_url}#{first.rule_id}" if ctx.rules_url else None,
                      topic=Coding(system=info.code_system, code=first.code,
                                   display=first.code.replace("-", " ").capitalize())),
        suggestions=suggestions or None,
        selectionBehavior=rule.conclude.selection if suggestions else None,
        overrideReasons=[OverrideReasonCoding(system=info.override_reason_system, code=r.code, display=r.display)
                         for r in info.override_reasons],
    )
