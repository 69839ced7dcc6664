"""Reading a JSON request body into a wire model, with errors that name what is wrong."""

from __future__ import annotations

from typing import Any

from flask import request
from werkzeug.exceptions import RequestEntityTooLarge

from cds.errors import CdsError
from cds.fhir.typed import decode_request

# An oversized body is read and dropped up to this size, so that the client, still sending, receives the 413
# instead of a connection reset. Larger ones are cut off.
DRAIN_LIMIT = 32 * 1024 * 1024


def read_json(typed_keys: frozenset[str] = frozenset(), keys: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The body as a JSON object: 415 unless JSON, 413 over the limit, 400 if malformed or not an object. The
    prefetch keys in `typed_keys` may come as TypedBundle; `keys`, all the service's prefetch keys, let a usual
    request be read in one pass (cds/fhir/typed.py)."""
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
    body = decode_request(raw, typed_keys, keys)
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
