"""Reading a JSON request body into a wire model, with errors that name what is wrong."""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from flask import request
from pydantic import BaseModel, ValidationError
from werkzeug.exceptions import RequestEntityTooLarge

from cds.errors import CdsError

M = TypeVar("M", bound=BaseModel)
MAX_REPORTED = 8
# An oversized body is read and dropped up to this size, so that the client, still sending, receives the 413
# instead of a connection reset. Larger ones are cut off.
DRAIN_LIMIT = 32 * 1024 * 1024


def read_json() -> dict[str, Any]:
    """The body as a JSON object: 415 unless JSON, 413 over the limit, 400 if malformed or not an object."""
    mimetype = request.mimetype
    if mimetype != "application/json" and not (mimetype.startswith("application/") and mimetype.endswith("+json")):
        raise CdsError(415, f"Content-Type must be application/json, not {mimetype or 'absent'}")
    limit = request.max_content_length
    length = request.content_length
    if limit is not None and length is not None and length > limit:
        _discard(min(length, DRAIN_LIMIT))
        raise too_large(limit)
    try:
        raw = request.get_data(cache=True)
    except RequestEntityTooLarge as exc:
        raise too_large(limit) from exc
    if not raw.strip():
        raise CdsError(400, "request body is empty; expected a JSON object")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise CdsError(400, f"request body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
                       ) from exc
    if not isinstance(body, dict):
        raise CdsError(400, f"request body must be a JSON object, not a JSON {type(body).__name__}")
    return body


def too_large(limit: int | None) -> CdsError:
    return CdsError(413, f"request body is larger than the limit of {limit} bytes", headers={"Connection": "close"})


def _discard(size: int) -> None:
    stream = request.environ.get("wsgi.input")
    remaining = size
    while stream is not None and remaining > 0:
        chunk = stream.read(min(remaining, 65536))
        if not chunk:
            break
        remaining -= len(chunk)


def _location(prefix: str, loc: tuple[Any, ...]) -> str:
    path = prefix
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path = f"{path}.{part}" if path else str(part)
    return path


def validate(model: type[M], data: Any, prefix: str = "", what: str = "request") -> M:
    """Validate data against a model; 400 listing each problem as `path: message` (values never echoed)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems, paths = [], []
        for err in exc.errors(include_url=False, include_input=False, include_context=False):
            path = _location(prefix, err["loc"]) or what
            message = str(err["msg"]).removeprefix("Value error, ")
            problems.append(f"{path}: {message}")
            paths.append(path)
        more = f" (and {len(problems) - MAX_REPORTED} more)" if len(problems) > MAX_REPORTED else ""
        raise CdsError(400, f"invalid {what}: " + "; ".join(problems[:MAX_REPORTED]) + more,
                       expression=paths[:MAX_REPORTED]) from exc
