"""A card's suggestions, one builder per kind a rule may name (rules/<recommendation>/rule.yaml, `suggest`): the
recommended dose as a draft exercise order or a step Goal, an order for an assessment or a referral, the order
hook's draft changed to the paced dose, and the removal of the draft exercise orders. Pure: no I/O, no clock."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fhir.resources.R4B.servicerequest import ServiceRequest

from cds.cards.drafts.resources import conformed_draft, draft_goal, draft_service_request
from cds.cards.lines import finding_lines
from cds.cards.uuids import card_uuid
from cds.cards.words import render
from cds.clinical.records import Dose
from cds.engine import Fired
from cds.hooks.models import Action, Suggestion
from cds.knowledge.schema import Suggestion as SuggestionSpec

if TYPE_CHECKING:
    from cds.cards.context import CardContext

SuggestionBuilder = Callable[["CardContext", Fired, SuggestionSpec], list[Suggestion]]


def _dose_words(dose: Dose) -> dict[str, Any]:
    return {"dose": dose.words(), "minutes": dose.minutes, "per_week": dose.per_week}


def _dose_suggestion(ctx: CardContext, finding: Fired, spec: SuggestionSpec) -> list[Suggestion]:
    """The recommended dose: a step Goal for a steps-only patient, else a draft exercise ServiceRequest."""
    rec = ctx.recommendation
    if rec is None or rec.code != finding.code:
        return []
    rid = card_uuid(ctx.hook_instance, finding.rule_id, "resource")
    sid = card_uuid(ctx.hook_instance, finding.rule_id, "suggestion")
    if rec.quota is not None:
        values = {"dose": rec.words(ctx.features), "dose_quota": f"{rec.quota:,}"}
        words = ctx.patient_words
        goal = draft_goal(ctx, rid, rec.quota,
                          render(words.goal(spec.goal_text or ""), {**values, "dose_quota": words.number(rec.quota)}))
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
    resource = draft_service_request(ctx, codes.coding(codes.orderables["exercise-therapy"]), rid,
                                     _instruction(ctx, spec, values), rec.dose,
                                     current.reference if current and current.reference.startswith("ServiceRequest/")
                                     else None)
    return [Suggestion(label=render(spec.label, values), uuid=sid, isRecommended=True,
                       actions=[Action(type="create", description=render(spec.description, values),
                                       resource=resource)])]


def _instruction(ctx: CardContext, spec: SuggestionSpec, values: dict[str, Any]) -> str:
    """The patient's instruction the suggestion names, in the patient's language."""
    return render(ctx.patient_words.instruction(spec.instruction or ""), values)


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
    resource = draft_service_request(ctx, codes.coding(codes.orderables[spec.orderable or ""]), rid,
                                     _instruction(ctx, spec, values), reasons=sources, priority=spec.priority)
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
    updated = conformed_draft(ctx, draft)
    timing = dict(updated.get("occurrenceTiming") or {})
    timing["repeat"] = {**(timing.get("repeat") or {}), "frequency": paced.per_week, "period": 1,
                        "periodUnit": "wk", "duration": paced.minutes, "durationUnit": "min"}
    updated["occurrenceTiming"] = timing
    updated["patientInstruction"] = _instruction(ctx, spec, values)
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
