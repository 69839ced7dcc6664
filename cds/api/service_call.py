"""POST /cds-services/{id}: validate the call, resolve prefetch, run the service, audit the call."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta

from flask import Blueprint, Response, g
from sqlalchemy.exc import SQLAlchemyError, StatementError
from werkzeug.exceptions import HTTPException

from cds import metrics
from cds.api.body import read_json
from cds.api.error_handler import json_response, where
from cds.charts.links import add_chart_links
from cds.engine import Fired
from cds.errors import CdsError
from cds.fhir.client import DeadlineExceeded
from cds.hooks.models import Card, CdsResponse
from cds.runtime import runtime
from cds.services.base import CdsService
from cds.services.pipeline import Outcome, answer
from cds.services.unavailable import data_unavailable_card
from cds.store.database import SHOWN, SILENT, AuditRecord, CardEntry, Store

bp = Blueprint("service_call", __name__)
log = logging.getLogger("cds.api")


def find_service(service_id: str) -> CdsService:
    services = runtime().services
    if service_id not in services:
        raise CdsError(404, f"no CDS service with id {service_id[:64]!r}; known: {', '.join(services)}")
    return services[service_id]


@bp.post("/cds-services/<service_id>")
def call(service_id: str) -> Response:
    service = find_service(service_id)
    rt = runtime()
    record = AuditRecord(service_id=service.id, rule_set_version=rt.engine.knowledge.version)
    status = 500
    try:
        body = read_json(service.typed_keys, service.prefetch_keys)
        deadline = record.started + rt.settings.request_deadline_s  # on the perf_counter clock
        now = rt.settings.now or datetime.now(UTC)
        try:
            answered = answer(service, body, rt.engine, rt.fhir, now, record=record,
                              deadline=time.monotonic() + max(0.0, deadline - time.perf_counter()),
                              https_only=rt.settings.env == "production", base_url=rt.settings.base_url,
                              allowed=rt.fhir_servers.for_issuer(g.get("iss")),
                              silent=service.id in rt.settings.silent)
        except (ArithmeticError, ValueError, TypeError) as exc:
            # OverflowError from extreme numbers, pydantic's ValidationError on what we build from the data, TypeError
            # from a resource field of the wrong JSON type. The exception text can quote the data: only its type and
            # where it was raised are logged.
            log.warning("call %s not evaluated: %s from the data at %s", record.hook_instance, type(exc).__name__,
                        where(exc))
            raise CdsError(400, "the request's data could not be evaluated: a value is out of range or malformed"
                           ) from exc
        except DeadlineExceeded as exc:
            # An EHR-facing service must not hold the clinician up, nor let silence pass for "no red flags".
            status = 200
            record.message = (f"deadline of {rt.settings.request_deadline_s:g} s passed waiting for the FHIR "
                              f"server ({exc}); answered that guidance is unavailable")
            card = data_unavailable_card(record.hook_instance or "", rt.engine.knowledge,
                                         rt.settings.request_deadline_s)
            record.cards = [CardEntry(card.uuid or "", _topic(card))]
            return json_response(CdsResponse(cards=[card]).to_json())
        metrics.prefetch_sources(answered.data.sources.values())
        response = answered.outcome.response
        if answered.outcome.silence:
            record.message = f"no cards: {answered.outcome.silence}"
        evaluated = cards_by_mode(answered.outcome)
        record.cards = [CardEntry(card.uuid or "", _topic(card), first.rule_id, first.rule_version, mode,
                                  card.to_json() if mode == SILENT else None) for card, first, mode in evaluated]
        metrics.cards((_topic(card) or "none", card.indicator, mode) for card, _, mode in evaluated)
        # Stored with the audit record, in its transaction, before the answer leaves: any instance can serve it.
        record.charts = add_chart_links(answered.outcome, rt.engine.knowledge.parameters, rt.settings.base_url)
        record.charts_expire = datetime.now(UTC) + timedelta(hours=rt.settings.chart_ttl_h)
        status = 200
        return json_response(response.to_json())
    except CdsError as error:
        status, record.message = error.status, error.message
        raise
    except HTTPException as exc:
        status = exc.code or 500
        raise
    finally:
        write_audit(rt.store, record, status)
        seconds = time.perf_counter() - record.started
        metrics.service_call(service.id, status, seconds)
        duration_ms = round(seconds * 1000, 1)
        log.info("service call service=%s hookInstance=%s iss=%s jti=%s status=%s cards=%d duration_ms=%.1f",
                 service.id, record.hook_instance, g.get("iss"), g.get("jti"), status, len(record.cards),
                 duration_ms, extra={"event": "service call", "service": service.id, "status": status,
                                     "hookInstance": record.hook_instance, "iss": g.get("iss"), "jti": g.get("jti"),
                                     "cards": len(record.cards), "duration_ms": duration_ms})


def cards_by_mode(outcome: Outcome) -> list[tuple[Card, Fired, str]]:
    """Every card evaluated, with its first finding (its rule) and its mode: those returned, then the silent ones
    (audited with what they would have said)."""
    return ([(card, first, SHOWN) for card, first in zip(outcome.response.cards, outcome.shown, strict=True)]
            + [(card, first, SILENT) for card, first in outcome.silent])


def _topic(card: Card) -> str | None:
    return card.source.topic.code if card.source.topic else None


def write_audit(store: Store, record: AuditRecord, status: int) -> None:
    """Every call is audited, whatever its data: when its charts cannot be stored (a number no column or JSON
    encoder takes), the call's row is written without them and says so."""
    try:
        try:
            store.audit(record, status)
        except (TypeError, ValueError, OverflowError, SQLAlchemyError) as exc:
            if not _unencodable(exc) or not record.charts:
                raise
            log.error("charts not stored for hookInstance %s: %s", record.hook_instance, type(exc).__name__)
            record.charts, record.charts_expire = [], None
            record.message = "; ".join(filter(None, [record.message, "charts not stored: a value could not be "
                                                                     "encoded"]))
            store.audit(record, status)
    except SQLAlchemyError as exc:  # its message can carry the statement's parameters: only the type
        metrics.audit_write_failed()
        log.error("audit record not written for hookInstance %s: %s", record.hook_instance, type(exc).__name__)


def _unencodable(exc: Exception) -> bool:
    """A value the encoder refused, raised as is or wrapped by SQLAlchemy."""
    cause = exc.orig if isinstance(exc, StatementError) else exc
    return isinstance(cause, (TypeError, ValueError, OverflowError))
