"""The one call path: a CDS Hooks request body -> validated request -> prefetch data -> records -> features ->
facts -> rules -> cards. The HTTP view, `pacing-cds evaluate`, the tests and the benchmarks all call `answer`."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol

from cds.cards.build import build_cards, build_silent_cards
from cds.cards.context import CardContext
from cds.clinical.features import Features, compute, condition_facts, vitals_fact
from cds.clinical.orders import OrderReview, has_activity_data, review
from cds.clinical.recommend import recommend
from cds.clinical.records import (
    DRAFT,
    IMPLAUSIBLE,
    Dose,
    Eligibility,
    OrderRecord,
    PatientRecord,
    SetAside,
    eligibility,
)
from cds.engine import Evaluation, Fired, RuleEngine
from cds.errors import CdsError
from cds.fhir.allowlist import AllowList
from cds.fhir.client import FhirClient
from cds.fhir.readers import (
    SNOMED,
    DoseLimits,
    NeedsGeneralReader,
    build_record,
    codes_of,
    for_pain,
    instruction_patterns,
    parse_time,
    read_dose,
)
from cds.fhir.resolver import UNOBTAINABLE, PrefetchData, draft_order_problems, read_as_dicts, resolve
from cds.hooks.models import (
    Card,
    CdsRequest,
    CdsResponse,
    OrderSelectContext,
    OrderSignContext,
    PatientViewContext,
)
from cds.hooks.validation import validate
from cds.services.base import CdsService


@dataclass
class Outcome:
    """The answer and everything that explains it (for the CLI and the audit)."""

    response: CdsResponse
    evaluation: Evaluation
    features: Features
    record: PatientRecord
    facts: list[dict[str, Any]] = field(default_factory=list)
    eligibility: Eligibility = Eligibility(True, "")
    silence: str | None = None  # why the answer has no card (the trace, the audit and the worklist say it)
    shown: list[Fired] = field(default_factory=list)  # the first finding (its rule) of each card returned, in order
    silent: list[tuple[Card, Fired]] = field(default_factory=list)  # cards evaluated and audited, not returned

    def silenced(self, why: str) -> Outcome:
        """This outcome with every card silent (a service in silent mode): evaluated and audited, none returned."""
        cards = list(zip(self.response.cards, self.shown, strict=True))
        silence = self.silence if not cards else f"{why}: {len(cards)} card(s) audited as silent, not returned"
        return replace(self, response=CdsResponse(cards=[]), shown=[], silent=cards + self.silent, silence=silence)


def _drafts(context: PatientViewContext, exercise_codes: set[str]) -> dict[str, dict[str, Any]]:
    """Draft exercise ServiceRequests of an order hook; at order-select only the selected ones."""
    if not isinstance(context, OrderSignContext):
        return {}
    selected = set(context.selections) if isinstance(context, OrderSelectContext) else None
    drafts = {}
    for entry in context.draftOrders.entry:
        resource = entry.resource
        if resource.get("resourceType") != "ServiceRequest" or "id" not in resource:
            continue
        reference = f"ServiceRequest/{resource['id']}"
        if selected is not None and reference not in selected:
            continue
        if set(codes_of(resource.get("code"), SNOMED)) & exercise_codes:
            drafts[reference] = resource
    return drafts


class CallRecord(Protocol):
    """What the caller keeps of a call as it is answered (the audit record): filled in as each step passes."""

    hook_instance: str | None
    hook: str | None
    patient_id: str | None
    user_id: str | None
    data_sources: dict[str, Any] | None


@dataclass
class Answer:
    """A call answered: the request as validated, the data it was answered from, and the outcome."""

    service: CdsService
    request: CdsRequest
    context: PatientViewContext
    data: PrefetchData
    outcome: Outcome


def answer(service: CdsService, body: Any, engine: RuleEngine, fhir: FhirClient, now: datetime, *,
           deadline: float | None = None, https_only: bool = False, record: CallRecord | None = None,
           stages: dict[str, float] | None = None, base_url: str | None = None,
           allowed: AllowList | None = None, silent: bool = False) -> Answer:
    """Answer one call of `service`: validate (CdsError 400), resolve prefetch (CdsError 412, DeadlineExceeded
    past `deadline` on the monotonic clock), evaluate and build the cards. `stages` receives seconds per stage;
    `base_url`, where the service is reached, makes each card's source link to its rule on the rules page;
    `allowed`, the FHIR servers the caller may name as fhirServer (none: any); `silent`, the service is in silent
    mode: every card is evaluated and kept in the outcome as silent, none returned."""
    started = time.perf_counter()
    request = validate(CdsRequest, body)
    if record is not None:
        record.hook_instance, record.hook = request.hookInstance, request.hook
    if https_only and request.fhirServer and not request.fhirServer.startswith("https://"):
        # The access token must not cross the network in clear text.
        raise CdsError(400, "fhirServer must be an https URL in production", expression=["fhirServer"])
    if request.hook != service.hook:
        raise CdsError(400, f"service {service.id} answers the {service.hook} hook, not {request.hook[:64]!r}",
                       expression=["hook"])
    context = validate(service.context_model, request.context, prefix="context")
    if record is not None:
        record.patient_id, record.user_id = context.patientId, context.userId
    if isinstance(context, OrderSignContext):
        _check_draft_subjects(context, request.fhirServer)
    validated = time.perf_counter()
    data = resolve(service.templates, request, context.patientId, fhir, service.optional_keys, deadline, allowed)
    if record is not None:
        record.data_sources = data.summary()
    if stages is not None:
        stages["validate"], stages["prefetch"] = validated - started, time.perf_counter() - validated
    resources = [r for key in data.resources for r in data.entries(key)]
    drafts = _drafts(context, set(engine.knowledge.codes.exercise_orders))
    # Data asked for whose request failed: "could not be read" (a key never asked for is "none recorded").
    unread = tuple(dict.fromkeys(t.resource_type for t in service.templates
                                 if data.sources.get(t.key) == UNOBTAINABLE))
    def evaluated(resources: list[Any]) -> Outcome:
        return evaluate_patient(engine, service.id, service.hook, request.hookInstance, context.patientId,
                                resources, now, drafts, stages, f"{base_url}/rules" if base_url else None, unread,
                                user_id=context.userId)

    try:
        outcome = evaluated(resources)
    except NeedsGeneralReader:  # an Observation read typed needs the general reader: every typed key is read as dicts
        read_as_dicts(data, service.templates, context.patientId, request.fhirServer)
        outcome = evaluated([r for key in data.resources for r in data.entries(key)])
    if silent:
        outcome = outcome.silenced(f"the service {service.id} is in silent mode")
    return Answer(service, request, context, data, outcome)


def _check_draft_subjects(context: OrderSignContext, fhir_server: str | None) -> None:
    """Draft orders must be the context patient's: another patient's order must not be reviewed or replaced."""
    entries = [entry.model_dump(by_alias=True) for entry in context.draftOrders.entry]
    problems = draft_order_problems(entries, context.patientId, fhir_server)
    if problems:
        raise CdsError(400, "; ".join(f"context.draftOrders {p}" for p in problems[:8]),
                       expression=["context.draftOrders"])


def evaluate_patient(engine: RuleEngine, service_id: str, hook: str, hook_instance: str, patient_id: str,
                     resources: list[Any], now: datetime,
                     drafts: dict[str, dict[str, Any]] | None = None,
                     stages: dict[str, float] | None = None, rules_url: str | None = None,
                     unread: tuple[str, ...] = (), *, user_id: str | None = None,
                     plain: Callable[[Any], dict[str, Any]] | None = None) -> Outcome:
    """One patient's FHIR resources -> records -> features -> facts -> rules -> cards: the clinical core that the
    hook services and the panel worklist share. `plain`: see build_record."""
    started = time.perf_counter()
    knowledge = engine.knowledge
    params = knowledge.values
    record = build_record(patient_id, resources, knowledge, now, plain)
    drafts = drafts or {}
    doses = _draft_doses(drafts, record, knowledge.codes.instruction_dose, params)
    features = compute(record, now, params, unread)
    facts: list[dict[str, Any]] = []
    who = eligibility(record, now.date(), params["adult_min_age"],
                      any(for_pain(d.get("reasonCode"), knowledge) for d in drafts.values()), "Condition" in unread)
    features.age_assumed = who.age_assumed
    if not who.eligible:  # not a patient the pacing rules are for: no cards (the audit says why)
        nothing = Evaluation(service_id, now, knowledge.version, (), ())
        return Outcome(CdsResponse(cards=[]), nothing, features, record, facts, who,
                       f"not a patient the pacing rules are for: {who.reason}")
    reviews: dict[str, OrderReview] = {}
    if hook == "patient-view":
        facts.append(features.patient_fact())
    else:
        activity = has_activity_data(record, now, params)
        for reference, resource in drafts.items():
            draft = OrderRecord(reference, DRAFT, parse_time(resource.get("authoredOn")), doses[reference], resource)
            reviews[reference] = review(draft, features, params)
            facts.append(reviews[reference].fact(activity, features))
    vitals = vitals_fact(record, now, params, frozenset(knowledge.codes.explains_weight_loss))
    if vitals is not None:
        facts.append(vitals)
    facts.extend(condition_facts(record, now))
    features_done = time.perf_counter()
    evaluation = engine.evaluate(service_id, facts, now)
    rules_done = time.perf_counter()
    dose_finding = next((f for f in evaluation.findings if f.kind == "dose"), None)
    ctx = CardContext(
        hook_instance=hook_instance, service_id=service_id, hook=hook, patient_id=patient_id,
        knowledge=knowledge, features=features, record=record, params=params,
        recommendation=recommend(dose_finding.code, knowledge.rule(dose_finding.rule_id).rule.conclude.dose,
                                 features, params) if dose_finding else None,
        reviews=reviews, drafts=drafts, facts=facts, rules_url=rules_url, user_id=user_id)
    shown = build_cards(evaluation, ctx)
    response = CdsResponse(cards=[card for card, _ in shown])
    silent = build_silent_cards(evaluation, ctx, lambda finding: recommend(
        finding.code, knowledge.rule(finding.rule_id).rule.conclude.dose, features, params)) \
        if evaluation.silent else []
    if stages is not None:
        stages["features"] = features_done - started
        stages["rules"] = rules_done - features_done
        stages["cards"] = time.perf_counter() - rules_done
    silence = None if response.cards else _silence(hook, drafts, reviews) if not silent else \
        f"only rules in silent mode made a recommendation: {len(silent)} card(s) audited as silent, not returned"
    return Outcome(response, evaluation, features, record, facts, who, silence,
                   [first for _, first in shown], silent)


def _draft_doses(drafts: dict[str, dict[str, Any]], record: PatientRecord, instruction_dose: list[str],
                 params: Any) -> dict[str, Dose | None]:
    """Each draft order's dose; a written dose out of the plausible range is set aside on the record, so that the
    card reports it like any value set aside."""
    patterns, limits = instruction_patterns(tuple(instruction_dose)), DoseLimits.of(params)
    doses: dict[str, Dose | None] = {}
    for reference, resource in drafts.items():
        doses[reference], problem = read_dose(resource, patterns, limits)
        if problem is not None:
            record.set_aside.append(SetAside(reference, f"dose set aside: {problem}", IMPLAUSIBLE))
    return doses


def _silence(hook: str, drafts: dict[str, dict[str, Any]], reviews: dict[str, OrderReview]) -> str:
    """Why an evaluation of a patient the rules are for ends with no card."""
    if hook == "patient-view":  # every eligible patient gets one dose recommendation: this is a gap in the rules
        return "no rule made a dose recommendation: a gap in the rules (report it)"
    if not drafts:
        what = "selected " if hook == "order-select" else ""
        return f"no {what}exercise order among the draft orders: nothing to review"
    fits = "; ".join(f"{ref} ({review.proposed.words() if review.proposed else 'no dose'})"
                     for ref, review in reviews.items())
    return f"the order fits the pacing plan: {fits}"
