"""POST /cds-services/{id}/feedback: validate, store each item once, acknowledge only what is stored."""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime, timedelta

from flask import Blueprint, Response, g, request
from sqlalchemy.exc import SQLAlchemyError

from cds import metrics
from cds.api.body import read_json
from cds.api.error_handler import json_response
from cds.api.service_call import find_service
from cds.errors import CdsError
from cds.hooks.models import FeedbackRequest
from cds.hooks.validation import validate
from cds.runtime import runtime

bp = Blueprint("feedback", __name__)
log = logging.getLogger("cds.api")


@bp.post("/cds-services/<service_id>/feedback")
def feedback(service_id: str) -> Response:
    service = find_service(service_id)
    rt = runtime()
    body = validate(FeedbackRequest, read_json(), what="feedback")
    limit = rt.settings.feedback_max_items
    if len(body.feedback) > limit:
        raise CdsError(400, f"feedback: at most {limit} items per request, not {len(body.feedback)}",
                       expression=["feedback"])
    client = client_key()
    try:
        _check_rate(client, len(body.feedback))
        stored = rt.store.add_feedback(service.id, body.feedback, client)
    except SQLAlchemyError as exc:
        log.error("feedback not stored for service %s: %s", service.id, type(exc).__name__)
        raise CdsError(503, "feedback could not be stored; send it again") from exc
    metrics.feedback_stored(item.outcome for item in body.feedback)
    log.info("feedback service=%s received=%d stored=%d", service.id, len(body.feedback), stored,
             extra={"event": "feedback", "service": service.id, "received": len(body.feedback), "stored": stored})
    return json_response({"received": len(body.feedback), "stored": stored})


def client_key() -> str:
    """Who is sending, for the rate limit: the token's issuer, else the peer address (digested, not stored)."""
    who = f"iss:{g.iss}" if g.get("iss") else f"addr:{request.remote_addr or '?'}"
    return hashlib.sha256(who.encode()).hexdigest()


def _check_rate(client: str, items: int) -> None:
    """429 when this client's items stored in the last minute, with these, would pass the limit."""
    rt = runtime()
    per_minute = rt.settings.feedback_rate_per_minute
    recent = rt.store.recent_feedback(client, datetime.now(UTC) - timedelta(minutes=1))
    if recent + items > per_minute:
        raise CdsError(429, f"feedback rate limit of {per_minute} items a minute reached; send it later",
                       headers={"Retry-After": "60"})
