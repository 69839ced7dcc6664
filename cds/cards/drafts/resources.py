"""The FHIR resources a card suggests, drafted to the HL7 Physical Activity IG profiles: a draft ServiceRequest
(pa-servicerequest: an exercise order, an assessment, a referral), a proposed step Goal (pa-goal), and an order
hook's own draft given what pa-servicerequest requires and it lacks. Pure: no I/O, no clock."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from fhir.resources.R4B.goal import Goal

from cds.cards.drafts import layout
from cds.clinical.records import Dose

if TYPE_CHECKING:
    from cds.cards.context import CardContext

PA_SERVICE_REQUEST = "http://hl7.org/fhir/us/physical-activity/StructureDefinition/pa-servicerequest"
PA_GOAL = "http://hl7.org/fhir/us/physical-activity/StructureDefinition/pa-goal"
# pa-servicerequest allows only a (US Core) Practitioner or PractitionerRole as requester.
REQUESTER_TYPES = ("Practitioner", "PractitionerRole")


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


def draft_service_request(ctx: CardContext, code: dict[str, str], rid: str, instruction: str,
                          dose: Dose | None = None, replaces: str | None = None, reasons: list[str] | None = None,
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
    return layout.service_request(resource)


def conformed_draft(ctx: CardContext, draft: dict[str, Any]) -> dict[str, Any]:
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


def draft_goal(ctx: CardContext, rid: str, steps: int, text: str) -> dict[str, Any]:
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
