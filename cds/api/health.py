"""GET /healthz (readiness): whether this process can answer (its database and, with client authentication, its
replay cache reachable), for load balancers: a 200 means an authenticated call can be served. GET /livez
(liveness): the process answers at all, whatever it depends on, so that an orchestrator restarts a stuck process
and not every instance while Redis is down."""

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
    auth = runtime().auth
    if auth is not None and not auth.replay.reachable():
        raise CdsError(503, "replay cache unreachable: authenticated calls cannot be served")
    return json_response({"status": "ok"})


@bp.get("/livez")
def live() -> Response:
    return json_response({"status": "ok"})
