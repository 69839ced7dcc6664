"""The usual Observations (a final pain score, a day's steps, a session, a blood pressure panel, a temperature, a
weight) are read by a lean path; everything else by the general path. For every chart the project holds, and for each
way a usual Observation can differ from the usual, the record must be the one the general path alone gives: the same
readings, in the same order, and the same readings set aside for the same reasons."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cds.clinical.records import PatientRecord
from cds.engine import Knowledge
from cds.fhir import steps
from cds.fhir.readers.builder import RecordBuilder, build_record
from cds.fhir.steps import StepPart
from tests.support.data import NOW, observation, with_change
from tests.support.examples import EXAMPLES

ROOT = Path(__file__).resolve().parents[2]
LOINC = "http://loinc.org"
PA = "http://hl7.org/fhir/us/physical-activity/CodeSystem/pa-temporary-codes"


def general_only(monkeypatch: pytest.MonkeyPatch, knowledge: Knowledge, patient_id: str,
                 resources: list[dict[str, Any]], now: datetime) -> PatientRecord:
    with monkeypatch.context() as patch:
        patch.setattr(RecordBuilder, "one_pass", lambda self, obs: False)
        return build_record(patient_id, resources, knowledge, now)


def prefetch_resources(request: dict[str, Any]) -> list[dict[str, Any]]:
    resources = []
    for value in (request.get("prefetch") or {}).values():
        if isinstance(value, dict) and value.get("resourceType") == "Bundle":
            resources += [e["resource"] for e in value.get("entry") or [] if isinstance(e, dict) and "resource" in e]
        elif isinstance(value, dict):
            resources.append(value)
    return resources


def charts() -> list[tuple[str, dict[str, Any], datetime]]:
    found = []
    for example in EXAMPLES:
        now = datetime.fromisoformat(example.expected["now"].replace("Z", "+00:00"))
        found.append((f"example {example.name}", example.request, now))
    for request in sorted((ROOT / "tests" / "real_data").glob("*/*/request.json")):
        found.append((f"real data {request.parent.name}", json.loads(request.read_text()), NOW))
    return found


CHARTS = charts()


@pytest.mark.parametrize(("name", "request_body", "now"), CHARTS, ids=[c[0] for c in CHARTS])
def test_every_chart_reads_as_the_general_path_reads_it(name: str, request_body: dict[str, Any], now: datetime,
                                                        knowledge: Knowledge,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    resources = prefetch_resources(request_body)
    patient_id = request_body["context"]["patientId"]
    assert build_record(patient_id, resources, knowledge, now) == general_only(
        monkeypatch, knowledge, patient_id, resources, now)


def quantity(value: Any, unit: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}


def usual(kind: str) -> dict[str, Any]:
    code, value, unit = {"pain": ("72514-3", 5, "{score}"), "steps": ("41950-7", 6200, "/d"),
                         "session": ("55411-3", 25, "min"), "temperature": ("8310-5", 36.8, "Cel"),
                         "weight": ("29463-7", 72.5, "kg"), "pressure": ("85354-9", 0, "")}[kind]
    reading = observation("p", f"{kind}-1", code, value, unit, datetime(2026, 11, 18, 8, tzinfo=UTC))
    if kind == "pressure":
        del reading["valueQuantity"]
        reading["component"] = [
            {"code": {"coding": [{"system": LOINC, "code": "8480-6"}]}, "valueQuantity": quantity(128, "mm[Hg]")},
            {"code": {"coding": [{"system": LOINC, "code": "8462-4"}]}, "valueQuantity": quantity(82, "mm[Hg]")}]
    return reading


KINDS = ["pain", "steps", "session", "temperature", "weight", "pressure"]


CHANGES = [
    ("status", "preliminary"), ("status", "amended"), ("status", "cancelled"), ("status", ...),
    # A status that is not a code reads as an absent one: the one-pass reader once failed on it (unhashable).
    ("status", ["final"]), ("status", {"code": "final"}),
    ("effectiveDateTime", "2026-11-18"), ("effectiveDateTime", "2026-11"), ("effectiveDateTime", "2026"),
    ("effectiveDateTime", "2026-11-18T08:00:00"), ("effectiveDateTime", "2026-11-18T08:00:00+02:00"),
    ("effectiveDateTime", "2026-12-01T08:00:00Z"), ("effectiveDateTime", "yesterday"), ("effectiveDateTime", ""),
    ("effectiveDateTime", 20261118), ("effectiveDateTime", ...),
    ("effectivePeriod", {"start": "2026-11-18T00:00:00Z", "end": "2026-11-18T23:59:59Z"}),
    ("valueQuantity.value", -1), ("valueQuantity.value", 11), ("valueQuantity.value", 10),
    ("valueQuantity.value", 0), ("valueQuantity.value", 2.5), ("valueQuantity.value", True),
    ("valueQuantity.value", "5"), ("valueQuantity.value", 90000), ("valueQuantity.value", ...),
    # More decimals than a converted value keeps: the one-pass reader once kept a day's steps unrounded.
    ("valueQuantity.value", 6200.0000001),
    ("valueQuantity.code", "h"), ("valueQuantity.code", "s"), ("valueQuantity.code", "kg"),
    ("valueQuantity.code", ...), ("valueQuantity.code", 7), ("valueQuantity.unit", ...),
    ("valueQuantity", ...), ("valueQuantity", 5), ("valueInteger", 4),
    ("code.coding.0.system", "http://snomed.info/sct"), ("code.coding.0.code", "8867-4"),
    ("code.coding.0.code", ["72514-3"]), ("code.coding", []), ("code", "72514-3"),
    ("code.coding", [{"system": LOINC, "code": "72514-3"}, {"system": LOINC, "code": "41950-7"}]),
    ("component", [{"code": {"coding": [{"system": LOINC, "code": "8480-6"}]}}]), ("component", []),
    ("component", [{"code": {"coding": [{"system": PA, "code": "DeviceActivePercentage"}]},
                    "valueQuantity": {"value": 40, "unit": "%", "code": "%"}}]),
    ("hasMember", [{"reference": "Observation/x"}]), ("id", ...), ("id", 7),
    ("device", {"reference": "Device/watch"}), ("performer", [{"reference": "Patient/p"}]),
]


# Ways a vital sign can differ: units and values of its own kind, and a blood pressure panel's components.
VITAL_CHANGES = [
    ("valueQuantity.code", "[degF]"), ("valueQuantity.code", "degF"), ("valueQuantity.code", "[lb_av]"),
    ("valueQuantity.code", "g"), ("valueQuantity.value", 98.6), ("valueQuantity.value", 45),
    ("valueQuantity.value", 30), ("valueQuantity.value", 700), ("valueQuantity.value", 72500),
    ("code.coding.0.code", "8331-1"), ("code.coding.0.code", "8480-6"), ("code.coding.0.code", "55284-4"),
    ("component.0.valueQuantity.value", 400), ("component.0.valueQuantity.value", 128.5),
    ("component.0.valueQuantity.value", True), ("component.0.valueQuantity.value", "128"),
    ("component.0.valueQuantity.code", "kPa"), ("component.0.valueQuantity.code", "mmHg"),
    ("component.0.valueQuantity.code", ...), ("component.1.valueQuantity.unit", ...),
    ("component.0.valueQuantity", ...), ("component.0.code.coding.0.code", "8462-4"),
    ("component.0.code.coding.0.code", "8459-0"), ("component.0.code.coding.0.code", "8867-4"),
    ("component.0.code.coding.0.system", "http://snomed.info/sct"),
    ("component.0.code.coding", [{"system": LOINC, "code": "8480-6"}, {"system": LOINC, "code": "8459-0"}]),
    ("component.1", "82"), ("component.1.code", ...), ("component", "128/82"), ("component", ...),
    ("valueQuantity", {"value": 128, "code": "mm[Hg]"}),
]


def cases(kinds: list[str], changes: list[tuple[str, Any]]) -> list[Any]:
    """Each change to each kind of reading that has the changed element's parent (a pain score has no component)."""
    found = []
    for path, value in changes:
        for kind in kinds:
            try:
                with_change(usual(kind), path, value)
            except (KeyError, IndexError, TypeError):
                continue
            found.append(pytest.param(kind, path, value, id=f"{kind}-{path}={'deleted' if value is ... else value!r}"))
    return found


READINGS = cases(KINDS, CHANGES) + cases(KINDS[3:], VITAL_CHANGES)


def resource_sets(kind: str, path: str, value: Any) -> list[list[dict[str, Any]]]:
    """The changed reading alone, and between two usual readings of its kind."""
    reading = with_change(usual(kind), path, value)
    return [[reading], [usual(kind), reading, with_change(usual(kind), "id", f"{kind}-2")]]


@pytest.mark.parametrize(("kind", "path", "value"), READINGS)
def test_an_unusual_reading_reads_as_the_general_path_reads_it(kind: str, path: str, value: Any,
                                                               knowledge: Knowledge,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    for resources in resource_sets(kind, path, value):
        assert build_record("p", resources, knowledge, NOW) == general_only(monkeypatch, knowledge, "p", resources,
                                                                            NOW)


def test_a_panel_member_session_is_left_to_its_panel(knowledge: Knowledge, monkeypatch: pytest.MonkeyPatch) -> None:
    member = usual("session")
    panel = with_change(usual("session"), "id", "panel")
    panel["hasMember"] = [{"reference": "Observation/session-1"}]
    del panel["valueQuantity"]
    resources = [panel, member]
    record = build_record("p", resources, knowledge, NOW)
    assert record == general_only(monkeypatch, knowledge, "p", resources, NOW)
    assert [r.source for r in record.sessions] == ["Observation/panel"]


def test_the_usual_readings_take_the_lean_path(knowledge: Knowledge) -> None:
    """The equivalence above would hold trivially if nothing took the lean path."""
    builder = RecordBuilder("p", knowledge, NOW)
    assert all(builder.one_pass(usual(kind)) for kind in KINDS)
    assert not builder.one_pass(with_change(usual("pain"), "status", "preliminary"))
    assert not builder.one_pass(with_change(usual("pressure"), "status", "preliminary"))
    assert builder.one_pass(with_change(usual("temperature"), "valueQuantity", quantity(98.6, "[degF]")))
    assert [r.value for r in builder.record.pain] == [5.0]
    assert [p.minutes for p in builder.session_parts] == [25.0]  # united with its source's others at the end
    assert [p.value for p in builder.step_parts] == [6200.0]
    assert [r.value for r in builder.record.temperature] == [36.8, 37.0]
    assert [r.value for r in builder.record.weight] == [72.5]
    assert [(r.systolic, r.diastolic, r.confirmed) for r in builder.record.blood_pressure] == [(128.0, 82.0, True)]
    assert builder.record.pain[0].when == datetime(2026, 11, 18, 8, tzinfo=UTC)


def test_one_total_a_day_sums_as_the_grouping_does() -> None:
    """Steps with one daily total a day skip the grouping by day and source: same days, same readings, same
    implausible days set aside, in the same order."""
    start = date(2026, 10, 1)
    parts = [StepPart(start + timedelta(days=d), f"Device/{d % 3}", datetime(2026, 10, 1, 20, tzinfo=UTC)
                      + timedelta(days=d), value, f"Observation/s{d}")
             for d, value in zip((5, 1, 3, 0, 9, 2), (6200.0, 0.0, 120000.0, 7400.0, -5.0, 50000.0), strict=True)]
    fast = steps._one_total_a_day(parts, 50000)
    assert fast == steps._grouped_totals(parts, 50000)
    assert list(fast[0]) == sorted(fast[0])
    assert [item.source for item in fast[1]] == ["Observation/s3", "Observation/s9"]
