"""GET /healthz: whether this process can answer (database reachable), for load balancers."""

from flask import Blueprint, Response
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from cds.api.error_handler import json_response
from cds.errors import CdsError
from cds.runtime import runtime

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def health() -> Response:
    try:
        with runtime().store.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        raise CdsError(503, "database unreachable") from exc
    return json_response({"status": "ok"})
