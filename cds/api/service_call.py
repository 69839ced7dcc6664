"""POST /cds-services/{id}: validate the call, resolve prefetch, run the service, audit the call."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

from flask import Blueprint, Response, g
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException

from cds.api.body import read_json, validate
from cds.api.error_handler import json_response, where
from cds.errors import CdsError
from cds.fhir.client import DeadlineExceeded
from cds.fhir.resolver import PrefetchData, draft_order_problems, resolve
from cds.hooks.models import CdsRequest, CdsResponse, OrderSignContext, PatientViewContext
from cds.runtime import runtime
from cds.services.base import CdsService
from cds.services.pipeline import Outcome
from cds.services.unavailable import data_unavailable_card
from cds.store.database import AuditRecord

bp = Blueprint("service_call", __name__)
log = logging.getLogger("cds.api")


def find_service(service_id: str) -> CdsService:
    services = runtime().services
    if service_id not in services:
        raise CdsError(404, f"no CDS service with id {service_id[:64]!r}; known: {', '.join(services)}")
    return services[service_id]


def _check_draft_subjects(context: OrderSignContext, fhir_server: str | None) -> None:
    """Draft orders must be the context patient's: another patient's order must not be reviewed or replaced."""
    entries = [entry.model_dump(by_alias=True) for entry in context.draftOrders.entry]
    problems = draft_order_problems(entries, context.patientId, fhir_server)
    if problems:
        raise CdsError(400, "; ".join(f"context.draftOrders {p}" for p in problems[:8]),
                       expression=["context.draftOrders"])


def _evaluate(service: CdsService, request: CdsRequest, context: PatientViewContext, data: PrefetchData,
              now: datetime) -> Outcome:
    """The service's answer; values the clinical core cannot represent are the caller's data problem (400)."""
    rt = runtime()
    try:
        return service.handler(service.id, service.hook, request, context, data, rt.engine, now)
    except (ArithmeticError, ValueError, TypeError) as exc:
        # OverflowError from extreme numbers, pydantic's ValidationError on what we build from the data, TypeError
        # from a resource field of the wrong JSON type. The exception text can quote the data: only its type and
        # where it was raised are logged.
        log.warning("call %s not evaluated: %s from the data at %s", request.hookInstance, type(exc).__name__,
                    where(exc))
        raise CdsError(400, "the request's data could not be evaluated: a value is out of range or malformed"
                       ) from exc


@bp.post("/cds-services/<service_id>")
def call(service_id: str) -> Response:
    service = find_service(service_id)
    rt = runtime()
    record = AuditRecord(service_id=service.id, rule_set_version=rt.engine.knowledge.version)
    status = 500
    try:
        request = validate(CdsRequest, read_json())
        record.hook_instance, record.hook = request.hookInstance, request.hook
        if rt.settings.env == "production" and request.fhirServer and not request.fhirServer.startswith("https://"):
            # The access token must not cross the network in clear text.
            raise CdsError(400, "fhirServer must be an https URL in production", expression=["fhirServer"])
        if request.hook != service.hook:
            raise CdsError(400, f"service {service.id} answers the {service.hook} hook, not {request.hook[:64]!r}",
                           expression=["hook"])
        context = validate(service.context_model, request.context, prefix="context")
        record.patient_id, record.user_id = context.patientId, context.userId
        if isinstance(context, OrderSignContext):
            _check_draft_subjects(context, request.fhirServer)
        deadline = record.started + rt.settings.request_deadline_s  # on the perf_counter clock
        try:
            data = resolve(service.templates, request, context.patientId, rt.fhir, service.optional_keys,
                           time.monotonic() + max(0.0, deadline - time.perf_counter()),
                           rt.fhir_servers.for_issuer(g.get("iss")))
        except DeadlineExceeded as exc:
            # An EHR-facing service must not hold the clinician up, nor let silence pass for "no red flags".
            status = 200
            record.message = (f"deadline of {rt.settings.request_deadline_s:g} s passed waiting for the FHIR "
                              f"server ({exc}); answered that guidance is unavailable")
            card = data_unavailable_card(request.hookInstance, rt.engine.knowledge, rt.settings.request_deadline_s)
            record.cards = [(card.uuid or "", card.source.topic.code if card.source.topic else None)]
            return json_response(CdsResponse(cards=[card]).to_json())
        record.data_sources = data.summary()
        now = rt.settings.now or datetime.now(UTC)
        outcome = _evaluate(service, request, context, data, now)
        record.cards = [(card.uuid or "", card.source.topic.code if card.source.topic else None)
                        for card in outcome.response.cards]
        status = 200
        return json_response(outcome.response.to_json())
    except CdsError as error:
        status, record.message = error.status, error.message
        raise
    except HTTPException as exc:
        status = exc.code or 500
        raise
    finally:
        try:
            rt.store.audit(record, status)
        except SQLAlchemyError as exc:  # its message can carry the statement's parameters: only the type
            log.error("audit record not written for hookInstance %s: %s", record.hook_instance, type(exc).__name__)
        log.info("service call service=%s hookInstance=%s iss=%s jti=%s status=%s cards=%d duration_ms=%.1f",
                 service.id, record.hook_instance, g.get("iss"), g.get("jti"), status, len(record.cards),
                 (time.perf_counter() - record.started) * 1000)
