"""POST /cds-services/{id}/feedback: validate, store each item once, acknowledge only what is stored."""

from __future__ import annotations

import logging

from flask import Blueprint, Response
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
    body = validate(FeedbackRequest, read_json(), what="feedback")
    try:
        stored = runtime().store.add_feedback(service.id, body.feedback)
    except SQLAlchemyError as exc:
        log.exception("feedback not stored for service %s", service.id)
        raise CdsError(503, "feedback could not be stored; send it again") from exc
    metrics.feedback_stored(item.outcome for item in body.feedback)
    log.info("feedback service=%s received=%d stored=%d", service.id, len(body.feedback), stored,
             extra={"event": "feedback", "service": service.id, "received": len(body.feedback), "stored": stored})
    return json_response({"received": len(body.feedback), "stored": stored})
