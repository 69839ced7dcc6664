"""One service call, end to end: prefetch data -> records -> features -> facts -> rules -> cards."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cds.cards import CardContext, build_cards
from cds.clinical.features import Features, compute, condition_facts, vitals_fact
from cds.clinical.orders import OrderReview, has_tolerance_data, review
from cds.clinical.recommend import recommend
from cds.clinical.records import OrderRecord, PatientRecord
from cds.engine import Evaluation, RuleEngine
from cds.fhir.readers import SNOMED, build_record, codes_of, order_dose, parse_time
from cds.fhir.resolver import PrefetchData
from cds.hooks.models import CdsRequest, CdsResponse, OrderSelectContext, OrderSignContext, PatientViewContext


@dataclass
class Outcome:
    """The answer and everything that explains it (for the CLI and the audit)."""

    response: CdsResponse
    evaluation: Evaluation
    features: Features
    record: PatientRecord
    facts: list[dict[str, Any]] = field(default_factory=list)


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


def evaluate_call(service_id: str, hook: str, request: CdsRequest, context: PatientViewContext, data: PrefetchData,
                  engine: RuleEngine, now: datetime, stages: dict[str, float] | None = None) -> Outcome:
    """The evaluation of a hook call; `stages`, when given, receives the seconds spent in features, rules, cards."""
    resources = [r for key in data.resources for r in data.entries(key)]
    drafts = _drafts(context, set(engine.knowledge.codes.exercise_orders))
    return evaluate_patient(engine, service_id, hook, request.hookInstance, context.patientId, resources, now,
                            drafts, stages)


def evaluate_patient(engine: RuleEngine, service_id: str, hook: str, hook_instance: str, patient_id: str,
                     resources: list[dict[str, Any]], now: datetime,
                     drafts: dict[str, dict[str, Any]] | None = None,
                     stages: dict[str, float] | None = None) -> Outcome:
    """One patient's FHIR resources -> records -> features -> facts -> rules -> cards: the clinical core that the
    hook services and the panel worklist share."""
    started = time.perf_counter()
    knowledge = engine.knowledge
    params = {name: p.value for name, p in knowledge.parameters.items()}
    record = build_record(patient_id, resources, knowledge.codes)
    features = compute(record, now, params)
    facts: list[dict[str, Any]] = []
    drafts = drafts or {}
    reviews: dict[str, OrderReview] = {}
    if hook == "patient-view":
        facts.append(features.patient_fact())
    else:
        tolerance = has_tolerance_data(record)
        for reference, resource in drafts.items():
            draft = OrderRecord(reference, "draft", parse_time(resource.get("authoredOn")), order_dose(resource),
                                resource)
            reviews[reference] = review(draft, features, params)
            facts.append(reviews[reference].fact(tolerance))
    vitals = vitals_fact(record, now)
    if vitals is not None:
        facts.append(vitals)
    facts.extend(condition_facts(record, now))
    features_done = time.perf_counter()
    evaluation = engine.evaluate(service_id, facts, now)
    rules_done = time.perf_counter()
    dose_finding = next((f for f in evaluation.findings if f.kind == "dose"), None)
    ctx = CardContext(
        hook_instance=hook_instance, service_id=service_id, patient_id=patient_id,
        knowledge=knowledge, features=features, record=record, params=params,
        recommendation=recommend(dose_finding.code, features, params) if dose_finding else None,
        reviews=reviews, drafts=drafts)
    response = CdsResponse(cards=build_cards(evaluation, ctx))
    if stages is not None:
        stages["features"] = features_done - started
        stages["rules"] = rules_done - features_done
        stages["cards"] = time.perf_counter() - rules_done
    return Outcome(response, evaluation, features, record, facts)
