"""A draft ServiceRequest laid out directly is, to the byte, what fhir.resources emits for it; a value of another
form goes through fhir.resources (and fails there as before)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from fhir.resources.R4B.servicerequest import ServiceRequest
from pydantic import ValidationError

from cds.cards.drafts import layout

PROFILE = "http://hl7.org/fhir/us/physical-activity/StructureDefinition/pa-servicerequest"
CATEGORY = {"system": "http://hl7.org/fhir/us/physical-activity/CodeSystem/pa-temporary-codes",
            "code": "PhysicalActivity", "display": "Physical Activity"}
EXERCISE = {"system": "http://snomed.info/sct", "code": "229065009", "display": "Exercise therapy"}


def draft() -> dict[str, Any]:
    """A draft as cds/cards/drafts/resources.py builds it, with every element it may set."""
    return copy.deepcopy({
        "resourceType": "ServiceRequest", "id": "5533ea05-eeb6-5206-a919-0476a61e5944",
        "meta": {"profile": [PROFILE]}, "status": "draft", "intent": "order", "category": [{"coding": [CATEGORY]}],
        "code": {"coding": [EXERCISE]}, "subject": {"reference": "Patient/p-1"},
        "authoredOn": datetime(2026, 11, 20, 9, tzinfo=UTC).isoformat(),
        "patientInstruction": "Exercise for 22 minutes on 3 set days each week.",
        "reasonReference": [{"reference": "Condition/c-1"}, {"reference": "Observation/o-1"}],
        "requester": {"reference": "Practitioner/u-1"},
        "occurrenceTiming": {"repeat": {"frequency": 3, "period": 1, "periodUnit": "wk", "duration": 22,
                                        "durationUnit": "min"}},
        "performer": [{"reference": "Patient/p-1"}], "priority": "urgent",
        "replaces": [{"reference": "ServiceRequest/old-1"}],
    })


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(resource: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = resource
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        if value is _DROP:
            del target[int(last) if last.isdigit() else last]
        else:
            target[int(last) if last.isdigit() else last] = value
    return change


def _both(first: Callable[[dict[str, Any]], None],
          second: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    def change(resource: dict[str, Any]) -> None:
        first(resource)
        second(resource)
    return change


_DROP = object()
CHANGES: dict[str, Callable[[dict[str, Any]], None]] = {
    "as drafted": lambda r: None,
    "microseconds": _set("authoredOn", datetime(2026, 11, 20, 9, 0, 0, 123450, tzinfo=UTC).isoformat()),
    "one microsecond": _set("authoredOn", datetime(2026, 1, 2, 3, 4, 5, 1, tzinfo=UTC).isoformat()),
    "an offset": _set("authoredOn", datetime(2026, 3, 29, 1, 30, tzinfo=timezone(timedelta(hours=2))).isoformat()),
    "a negative offset": _set("authoredOn",
                              datetime(1999, 12, 31, 23, 59, 59, tzinfo=timezone(-timedelta(hours=5, minutes=30)))
                              .isoformat()),
    "no zone": _set("authoredOn", "2026-11-20T09:00:00"),
    "a date": _set("authoredOn", "2026-11-20"),
    "no authoredOn": _set("authoredOn", _DROP),
    "no requester": _set("requester", _DROP),
    "no timing or performer": _both(_set("occurrenceTiming", _DROP), _set("performer", _DROP)),
    "coded reason": _both(_set("reasonReference", _DROP), _set("reasonCode", [{"coding": [EXERCISE]}])),
    "routine": _set("priority", "routine"),
    "no priority, no replaces": _both(_set("priority", _DROP), _set("replaces", _DROP)),
    "unicode instruction": _set("patientInstruction", "Marchez 20 minutes, 3 fois par semaine — à votre rythme ✓"),
    "instruction on two lines": _set("patientInstruction", "Walk 20 minutes.\n\nStop at the time.\tThen rest."),
    "instruction with a vertical tab": _set("patientInstruction", "Walk\x0b20 minutes"),
    "instruction of a no-break space": _set("patientInstruction", "\u00a0"),
    "empty instruction": _set("patientInstruction", ""),
    "reference with spaces": _set("reasonReference.1.reference", "Observation/a b"),
    "reference of a space": _set("reasonReference.1.reference", " "),
    "empty reference": _set("subject.reference", ""),
    "id too long": _set("id", "x" * 65),
    "id with a slash": _set("id", "a/b"),
    "code with two spaces": _set("code.coding.0.code", "a  b"),
    "code with a leading space": _set("code.coding.0.code", " a"),
    "system with a space": _set("code.coding.0.system", "http://snomed.info/ sct"),
    "no display": _set("code.coding.0.display", _DROP),
    "display None": _set("code.coding.0.display", None),
    "code text": _set("code.text", "Exercise"),
    "another element": _set("note", [{"text": "a note"}]),
    "zero duration": _set("occurrenceTiming.repeat.duration", 0),
    "float duration": _set("occurrenceTiming.repeat.duration", 22.0),
    "half minutes": _set("occurrenceTiming.repeat.duration", 22.5),
    "boolean frequency": _set("occurrenceTiming.repeat.frequency", True),
    "large frequency": _set("occurrenceTiming.repeat.frequency", 2**31),
    "status with a space": _set("status", "draft "),
    "no status": _set("status", _DROP),
    "empty category": _set("category", []),
}


def _emitted(resource: dict[str, Any]) -> bytes | type[ValidationError]:
    try:
        return orjson.dumps(ServiceRequest.model_validate(resource).model_dump(mode="json", exclude_none=True))
    except ValidationError:
        return ValidationError


def _laid_out(resource: dict[str, Any]) -> bytes | type[ValidationError]:
    try:
        return orjson.dumps(layout.service_request(resource))
    except ValidationError:
        return ValidationError


@pytest.mark.parametrize("name", CHANGES)
def test_a_draft_is_what_fhir_resources_emits_to_the_byte(name: str) -> None:
    resource = draft()
    CHANGES[name](resource)
    assert _laid_out(copy.deepcopy(resource)) == _emitted(copy.deepcopy(resource))


def test_a_usual_draft_is_laid_out_without_a_model_validation(monkeypatch: pytest.MonkeyPatch) -> None:
    expected = _emitted(draft())

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("validated through fhir.resources")

    monkeypatch.setattr(ServiceRequest, "model_validate", refuse)
    assert _laid_out(draft()) == expected


def test_an_unusual_draft_goes_through_fhir_resources(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []
    validate = ServiceRequest.model_validate

    def counted(resource: dict[str, Any]) -> ServiceRequest:
        calls.append(resource)
        return validate(resource)

    monkeypatch.setattr(ServiceRequest, "model_validate", counted)
    resource = draft()
    resource["note"] = [{"text": "a note"}]
    layout.service_request(resource)
    assert len(calls) == 1
