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
from cds.hooks.models import Feedback, FeedbackRequest
from cds.hooks.validation import MAX_REPORTED, validate
from cds.runtime import runtime
from cds.store.database import FeedbackLimit, FeedbackRateExceeded

bp = Blueprint("feedback", __name__)
log = logging.getLogger("cds.api")

# How far an outcome may lie ahead of this service's clock: the EHR's clock may run a little fast, but an outcome
# dated later than that would stay a card's latest outcome (the report's and the plan page's) until its time came.
OUTCOME_CLOCK_SKEW = timedelta(minutes=5)
RATE_WINDOW = timedelta(minutes=1)


@bp.post("/cds-services/<service_id>/feedback")
def feedback(service_id: str) -> Response:
    service = find_service(service_id)
    rt = runtime()
    body = validate(FeedbackRequest, read_json(), what="feedback")
    limit = rt.settings.feedback_max_items
    if len(body.feedback) > limit:
        raise CdsError(400, f"feedback: at most {limit} items per request, not {len(body.feedback)}",
                       expression=["feedback"])
    _check_not_ahead(body.feedback, rt.settings.now or datetime.now(UTC))
    per_minute = rt.settings.feedback_rate_per_minute
    try:
        stored = rt.store.add_feedback(service.id, body.feedback, client_key(), FeedbackLimit(per_minute, RATE_WINDOW))
    except FeedbackRateExceeded as exc:
        raise CdsError(429, f"feedback rate limit of {per_minute} items a minute reached; send it later",
                       headers={"Retry-After": "60"}) from exc
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


def _check_not_ahead(items: list[Feedback], now: datetime) -> None:
    """400 naming each outcomeTimestamp later than the clock allows: the latest outcome of a card wins."""
    latest = now + OUTCOME_CLOCK_SKEW
    paths = [f"feedback[{i}].outcomeTimestamp" for i, item in enumerate(items) if item.outcomeTimestamp > latest]
    if not paths:
        return
    minutes = int(OUTCOME_CLOCK_SKEW.total_seconds() // 60)
    problems = [f"{path}: must not be later than this service's clock plus {minutes} minutes" for path in paths]
    more = f" (and {len(paths) - MAX_REPORTED} more)" if len(paths) > MAX_REPORTED else ""
    raise CdsError(400, "invalid feedback: " + "; ".join(problems[:MAX_REPORTED]) + more,
                   expression=paths[:MAX_REPORTED])
