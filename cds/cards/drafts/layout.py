"""Draft ServiceRequests as fhir.resources emits them, without a model validation per draft.

A card's draft ServiceRequest has a fixed shape (cds/cards/drafts/resources.py builds it). Passing each through
`ServiceRequest.model_validate(...).model_dump(mode="json", exclude_none=True)` cost about a tenth of a patient-view
call, for a result that is known in advance: the same elements, in the order of `ServiceRequest.elements_sequence()`,
authoredOn written as pydantic writes a date-time, and every other value unchanged. `service_request` lays a draft
out so when each of its values has a form that passes fhir.resources unchanged (a code without stray whitespace, an
id of the id pattern, text of allowed characters, a positive count); a draft with any other element or value goes
through fhir.resources as before. tests/cards/test_drafts.py holds the two ways to the same bytes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from fhir.resources.R4B.servicerequest import ServiceRequest
from pydantic import TypeAdapter, ValidationError

_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_CODE = re.compile(r"\S+(?: \S+)*")
_URI = re.compile(r"\S+")
_TEXT = re.compile(r"[ \r\n\t\S]+")
_DATE_TIME = re.compile(r"[1-9]\d{3}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{6})?[+-]\d{2}:\d{2}")
_MAX_INT = 2**31 - 1
_PARSE_DATE_TIME = TypeAdapter(datetime)
_JSON_VALUE: TypeAdapter[Any] = TypeAdapter(Any)

Check = Callable[[Any], Any]


def _id(value: Any) -> Any:
    return value if isinstance(value, str) and _ID.fullmatch(value) else None


def _code(value: Any) -> Any:
    return value if isinstance(value, str) and _CODE.fullmatch(value) else None


def _uri(value: Any) -> Any:
    return value if isinstance(value, str) and _URI.fullmatch(value) else None


def _text(value: Any) -> Any:
    return value if isinstance(value, str) and _TEXT.fullmatch(value) else None


def _count(value: Any) -> Any:
    return value if type(value) is int and 1 <= value <= _MAX_INT else None


def _date_time(value: Any) -> Any:
    """An aware datetime's isoformat, as the model emits it (pydantic's JSON form: "Z" for UTC)."""
    if not isinstance(value, str) or not _DATE_TIME.fullmatch(value):
        return None
    try:
        return _JSON_VALUE.dump_python(_PARSE_DATE_TIME.validate_python(value), mode="json")
    except ValidationError:
        return None


def _object(fields: tuple[tuple[str, Check], ...], required: frozenset[str] = frozenset()) -> Check:
    """A complex element with these fields (in the order the model emits them), each checked."""
    names = {name for name, _ in fields}

    def check(value: Any) -> Any:
        if not isinstance(value, dict) or not value or not names.issuperset(value) or not required <= value.keys():
            return None
        out = {}
        for name, field in fields:
            if name in value:
                emitted = field(value[name])
                if emitted is None:
                    return None
                out[name] = emitted
        return out
    return check


def _list(item: Check) -> Check:
    def check(value: Any) -> Any:
        if not isinstance(value, list) or not value:
            return None
        out = [item(v) for v in value]
        return None if any(v is None for v in out) else out
    return check


_CODING = _object((("system", _uri), ("code", _code), ("display", _text)), frozenset({"system", "code"}))
_CONCEPT = _object((("coding", _list(_CODING)),))
_REFERENCE = _object((("reference", _text),))
_REPEAT = _object((("duration", _count), ("durationUnit", _code), ("frequency", _count), ("period", _count),
                   ("periodUnit", _code)))
# The elements a draft may have, in the order of ServiceRequest.elements_sequence().
_SERVICE_REQUEST: tuple[tuple[str, Check], ...] = (
    ("id", _id), ("meta", _object((("profile", _list(_uri)),))), ("replaces", _list(_REFERENCE)),
    ("status", _code), ("intent", _code), ("category", _list(_CONCEPT)), ("priority", _code), ("code", _CONCEPT),
    ("subject", _REFERENCE), ("occurrenceTiming", _object((("repeat", _REPEAT),))), ("authoredOn", _date_time),
    ("requester", _REFERENCE), ("performer", _list(_REFERENCE)), ("reasonCode", _list(_CONCEPT)),
    ("reasonReference", _list(_REFERENCE)), ("patientInstruction", _text))
_LAID_OUT = _object(_SERVICE_REQUEST, frozenset({"status", "intent", "subject"}))


def service_request(resource: dict[str, Any]) -> dict[str, Any]:
    """A draft ServiceRequest as `ServiceRequest.model_validate(resource).model_dump(mode="json",
    exclude_none=True)` gives it."""
    fields = {k: v for k, v in resource.items() if k != "resourceType"}
    laid_out = _LAID_OUT(fields) if resource.get("resourceType") == "ServiceRequest" else None
    if laid_out is None:
        return ServiceRequest.model_validate(resource).model_dump(mode="json", exclude_none=True)
    return {"resourceType": "ServiceRequest", **laid_out}
