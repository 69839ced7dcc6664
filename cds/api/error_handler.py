"""The one error handler: every failure becomes a FHIR OperationOutcome naming the problem, never a trace."""

from __future__ import annotations

import logging
import traceback
import uuid
from typing import Any

import orjson
from fhir.resources.R4B.operationoutcome import OperationOutcome
from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed, RequestEntityTooLarge

from cds.api.body import too_large
from cds.errors import CdsError

log = logging.getLogger("cds.api")


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status=status, mimetype="application/json", headers=headers)


def operation_outcome(error: CdsError) -> dict[str, Any]:
    issue: dict[str, Any] = {
        "severity": "fatal" if error.status >= 500 else "error",
        "code": error.issue_code,
        "details": {"text": error.message},
    }
    if error.expression:
        issue["expression"] = error.expression
    resource = OperationOutcome.model_validate({"resourceType": "OperationOutcome", "issue": [issue]})
    return resource.model_dump(mode="json", exclude_none=True)


def error_response(error: CdsError) -> Response:
    return json_response(operation_outcome(error), error.status, error.headers)


def from_http_exception(exc: HTTPException) -> CdsError:
    """Werkzeug's routing and body errors in our words."""
    status = exc.code or 500
    path = request.path[:200]
    if isinstance(exc, MethodNotAllowed):
        allowed = ", ".join(sorted(exc.valid_methods or []))
        return CdsError(405, f"method {request.method} is not allowed on {path}; allowed: {allowed}",
                        headers={"Allow": allowed})
    if isinstance(exc, RequestEntityTooLarge):
        return too_large(request.max_content_length)
    if status == 404:
        return CdsError(404, f"no endpoint at {path}; the discovery endpoint is /cds-services")
    return CdsError(status, exc.description or exc.name)


def loggable_path() -> str:
    """The request path for a log line: a chart token is a credential, so it never reaches the log."""
    path = request.path[:200]
    if not path.startswith("/charts/"):
        return path
    _, slash, rest = path.removeprefix("/charts/").partition("/")
    return "/charts/(token)" + slash + rest


def register(app: Flask) -> None:
    @app.errorhandler(CdsError)
    def _cds_error(error: CdsError) -> Response:
        return error_response(error)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        return error_response(from_http_exception(exc))

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        reference = uuid.uuid4().hex[:12]
        log.error("unhandled %s, reference %s, on %s %s at %s", type(exc).__name__, reference, request.method,
                  loggable_path(), where(exc))
        return error_response(CdsError(500, f"internal error; reference {reference}"))


def where(exc: BaseException) -> str:
    """The frames an exception passed through, without its message: messages can quote request data."""
    frames = traceback.extract_tb(exc.__traceback__)[-8:]
    return " < ".join(f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno} {f.name}" for f in reversed(frames))
