"""Observation search Bundles read typed (cds/fhir/typed.py) give what the general path gives: the same record for
every way a usual reading can differ, the same answer for every chart, the same status and message for bad input.
And the usual body does take the typed path, or none of this would show anything."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from flask.testing import FlaskClient

from cds.engine import Knowledge, RuleEngine
from cds.fhir.client import FhirClient
from cds.fhir.readers.builder import NeedsGeneralReader, build_record
from cds.fhir.typed import TypedBundle, decode_request
from cds.services import services_of
from cds.services.pipeline import answer
from tests.api.test_service_call import assert_outcome
from tests.clinical.test_lean_reading import CHARTS, KINDS, READINGS, general_only, resource_sets, usual
from tests.support.data import NOW, full_prefetch, patient_view, searchset, with_change

OBS = frozenset({"obs"})
# The two ways a body is read: member by member, and in one pass when the service's prefetch keys are given.
PATHS = pytest.mark.parametrize("one_pass", [False, True], ids=["member by member", "one pass"])


def decode(raw: bytes, typed_keys: frozenset[str], one_pass: bool, keys: frozenset[str] = frozenset()) -> Any:
    return decode_request(raw, typed_keys, (keys | typed_keys) if one_pass else frozenset())


def typed_bundle(resources: list[dict[str, Any]]) -> Any:
    """The key as decode_request gives it in the service: a TypedBundle, or the dicts when it does not fit."""
    raw = orjson.dumps({"prefetch": {"obs": searchset(resources)}})
    return decode_request(raw, OBS, OBS)["prefetch"]["obs"]


def read_typed(knowledge: Knowledge, resources: list[dict[str, Any]]) -> Any:
    """The record from the typed Observations; None when decode or the one-pass reader leaves them to dicts."""
    value = typed_bundle(resources)
    if type(value) is not TypedBundle:
        return None
    try:
        return build_record("p", value.observations(), knowledge, NOW)
    except NeedsGeneralReader:
        return None


@pytest.mark.parametrize(("kind", "path", "value"), READINGS)
def test_a_typed_reading_reads_as_the_general_path_reads_it(kind: str, path: str, value: Any,
                                                            knowledge: Knowledge,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    for resources in resource_sets(kind, path, value):
        typed = read_typed(knowledge, resources)
        if typed is not None:
            assert typed == general_only(monkeypatch, knowledge, "p", resources, NOW)


def test_the_usual_readings_take_the_typed_path(knowledge: Knowledge, monkeypatch: pytest.MonkeyPatch) -> None:
    resources = [with_change(usual(kind), "id", f"{kind}-{i}") for i, kind in enumerate(KINDS)]
    resources.append(with_change(usual("steps"), "device", {"reference": "Device/watch"}))
    record = read_typed(knowledge, resources)
    assert record is not None
    assert record == general_only(monkeypatch, knowledge, "p", resources, NOW)
    assert [r.value for r in record.pain] == [5.0]
    assert [(r.systolic, r.diastolic) for r in record.blood_pressure] == [(128.0, 82.0)]


def test_steps_keep_their_source_when_read_typed(knowledge: Knowledge, monkeypatch: pytest.MonkeyPatch) -> None:
    """A day's steps count once per source (device, else performer, else meta.source): the typed reader must name
    each source as the general reader does, or a day's total and an implausible day's reason change."""
    def steps(ident: str, value: int, hour: int, **source: Any) -> dict[str, Any]:
        reading = with_change(usual("steps"), "id", ident)
        reading["valueQuantity"]["value"] = value
        reading["effectiveDateTime"] = f"2026-11-18T{hour:02d}:00:00Z"
        return {**reading, **source}
    resources = [steps("s1", 5000, 20, performer=[{"reference": "Patient/p"}]), steps("s2", 4000, 21),
                 steps("s3", 3000, 19, device={"reference": "Device/watch"}),
                 steps("s4", 6000, 18, meta={"source": "#phone", "versionId": "2"}),
                 steps("s5", 250000, 17, performer=[{"display": "no reference"}, {"reference": "Device/band"}])]
    record = read_typed(knowledge, resources)
    assert record is not None
    assert record == general_only(monkeypatch, knowledge, "p", resources, NOW)
    assert [r.value for r in record.steps.values()] == [6000.0]
    assert any("Device/band" in s.why for s in record.set_aside)


def test_a_typed_panel_and_its_member_count_once(knowledge: Knowledge, monkeypatch: pytest.MonkeyPatch) -> None:
    """An activity panel (hasMember) is the general readers' work: read typed, its Bundle goes back to dicts and
    the member session counts through its panel only."""
    member = usual("session")
    panel = with_change(usual("session"), "id", "panel")
    panel["hasMember"] = [{"reference": "Observation/session-1"}]
    resources = [member, panel]
    value = typed_bundle(resources)
    assert type(value) is TypedBundle
    with pytest.raises(NeedsGeneralReader):
        build_record("p", value.observations(), knowledge, NOW)
    general = general_only(monkeypatch, knowledge, "p", resources, NOW)
    assert [r.source for r in general.sessions] == ["Observation/panel"]


@pytest.mark.parametrize(("change", "why"), [
    (("status", 5), "a status that is not a string"),
    (("valueQuantity.value", True), "a value that is not a number"),
    (("valueQuantity.value", "5"), "a value that is not a number"),
    (("code", "72514-3"), "a code that is not a CodeableConcept"),
    (("resourceType", "Condition"), "not an Observation"),
    (("subject", "Patient/p"), "a subject that is not a Reference"),
])
def test_a_bundle_that_does_not_fit_is_read_as_dicts(change: tuple[str, Any], why: str) -> None:
    resources = [usual("pain"), with_change(usual("pain"), *change)]
    value = typed_bundle(resources)
    assert type(value) is not TypedBundle, why
    assert value == searchset(resources)  # every element kept, as orjson reads it


@PATHS
def test_a_bundle_with_more_pages_is_read_as_dicts(one_pass: bool) -> None:
    bundle = searchset([usual("pain")])
    bundle["link"] = [{"relation": "next", "url": "https://fhir.example.org/Observation?page=2"}]
    value = decode(orjson.dumps({"prefetch": {"obs": bundle}}), OBS, one_pass)["prefetch"]["obs"]
    assert value == bundle


@PATHS
@pytest.mark.parametrize("vendor_member", [False, True], ids=["spec members", "a vendor's member too"])
@pytest.mark.parametrize("vendor_key", [False, True], ids=["the service's keys", "a vendor's key too"])
def test_the_body_around_the_typed_keys_is_read_whole(vendor_member: bool, vendor_key: bool, one_pass: bool) -> None:
    body = patient_view("p", full_prefetch("p"))
    body["extension"] = {"example.org/x": [1, 2.5, None, True, "é"]}
    if vendor_member:
        body["example-vendor"] = {"trace": "abc"}
    if vendor_key:
        body["prefetch"]["example-vendor"] = {"resourceType": "Basic", "id": "x"}
    body["prefetch"]["weight"] = None
    keys = frozenset(body["prefetch"]) - {"example-vendor"}
    decoded = decode(orjson.dumps(body), frozenset({"pain", "activity", "weight"}), one_pass, keys)
    assert set(decoded) == set(body)
    assert {k: v for k, v in decoded.items() if k != "prefetch"} == {k: v for k, v in body.items()
                                                                    if k != "prefetch"}
    assert sorted(decoded["prefetch"]) == sorted(body["prefetch"])
    assert sorted(k for k, v in decoded["prefetch"].items() if type(v) is TypedBundle) == ["activity", "pain"]
    assert {k: v for k, v in decoded["prefetch"].items() if type(v) is not TypedBundle} == {
        k: v for k, v in body["prefetch"].items() if k not in ("pain", "activity")}
    # Read in one pass exactly when the body has the spec's members and the service's keys only.
    in_one_pass = decoded["prefetch"]["pain"].piece is None
    assert in_one_pass == (one_pass and not vendor_member and not vendor_key)


@PATHS
def test_a_repeated_member_or_key_counts_as_its_last_as_orjson_reads_it(one_pass: bool) -> None:
    first, last = searchset([]), searchset([usual("pain")])
    raw = (b'{"hook":"patient-view","prefetch":{"obs":' + orjson.dumps(first) + b',"obs":' + orjson.dumps(last)
           + b'},"hook":"order-select"}')
    decoded = decode(raw, OBS, one_pass)
    assert decoded["hook"] == orjson.loads(raw)["hook"] == "order-select"
    assert [o.id for o in decoded["prefetch"]["obs"].observations()] == ["pain-1"]


@PATHS
def test_every_chart_gets_the_answer_of_the_general_path(engine: RuleEngine, one_pass: bool) -> None:
    services = services_of(engine.knowledge)
    fhir = FhirClient(3.0, 10)
    typed_charts = 0
    try:
        for _name, request, now in CHARTS:
            service = next((s for s in services.values() if s.hook == request.get("hook")), None)
            if service is None or "prefetch" not in request:
                continue
            raw = orjson.dumps(request)
            body = decode(raw, service.typed_keys, one_pass, service.prefetch_keys)
            typed_charts += any(type(v) is TypedBundle for v in body["prefetch"].values())
            try:
                typed = orjson.dumps(answer(service, body, engine, fhir, now).outcome.response.to_json())
            except Exception as exc:
                with pytest.raises(type(exc)):
                    answer(service, orjson.loads(raw), engine, fhir, now)
                continue
            general = orjson.dumps(answer(service, orjson.loads(raw), engine, fhir, now).outcome.response.to_json())
            assert typed == general, _name
    finally:
        fhir.close()
    assert typed_charts > 0


def call(client: FlaskClient, raw: bytes) -> Any:
    return client.post("/cds-services/pacing-review", data=raw, content_type="application/json")


@PATHS
def test_an_unusual_reading_sends_the_typed_keys_to_the_general_readers(engine: RuleEngine, one_pass: bool) -> None:
    """A preliminary score in a typed Bundle: the typed keys are read again as dicts, and the answer is the general
    path's, the score set aside and said so."""
    service = services_of(engine.knowledge)["pacing-review"]
    prefetch = full_prefetch("p")
    prefetch["pain"]["entry"][0]["resource"]["status"] = "preliminary"
    raw = orjson.dumps(patient_view("p", prefetch))
    fhir = FhirClient(3.0, 10)
    try:
        body = decode(raw, service.typed_keys, one_pass, service.prefetch_keys)
        assert type(body["prefetch"]["pain"]) is TypedBundle
        typed = answer(service, body, engine, fhir, NOW)
        general = answer(service, orjson.loads(raw), engine, fhir, NOW)
    finally:
        fhir.close()
    assert [type(typed.data.resources[k]) for k in ("pain", "activity")] == [dict, dict]
    assert typed.outcome.record == general.outcome.record
    assert any(s.source == "Observation/p-pain-0" for s in typed.outcome.record.set_aside)
    assert typed.outcome.response.to_json() == general.outcome.response.to_json()


@pytest.mark.parametrize(("change", "status", "fragment"), [
    (("pain.entry.0.resource.subject.reference", "Patient/other"), 400,
     "prefetch.pain entry[0] belongs to another patient than context.patientId"),
    (("pain.entry.0.resource.subject", ...), 400, "prefetch.pain entry[0] has no subject"),
])
def test_a_typed_bundle_for_another_patient_is_refused_as_before(client: FlaskClient, change: tuple[str, Any],
                                                                 status: int, fragment: str) -> None:
    prefetch = with_change(full_prefetch("p"), *change)
    response = call(client, orjson.dumps(patient_view("p", prefetch)))
    assert_outcome(response, status, fragment)


@pytest.mark.parametrize("status", [["final"], {"code": "final"}], ids=["an array", "an object"])
def test_a_status_that_is_not_a_code_is_set_aside_as_an_absent_one(client: FlaskClient, status: Any) -> None:
    """Such a Bundle does not fit the typed records and is read as dicts; the one-pass reader of dicts leaves the
    reading to the general reader, which sets it aside as if it had no status, rather than failing the call."""
    answers = []
    for value in (status, ...):
        prefetch = with_change(full_prefetch("p"), "pain.entry.0.resource.status", value)
        response = call(client, orjson.dumps(patient_view("p", prefetch)))
        assert response.status_code == 200
        answers.append([(c["summary"], c["detail"]) for c in response.json["cards"]])
    assert answers[0] == answers[1]


def test_bad_json_inside_a_typed_bundle_gets_the_general_paths_error(client: FlaskClient) -> None:
    good = orjson.dumps(patient_view("p", full_prefetch("p")))
    for bad, fragment in (
        (good.replace(b'"value":4', b'"value":1e400', 1), "number is infinity"),
        (good.replace(b'"status":"final"', b'"status":"fin\xffal"', 1), "not valid UTF-8"),
        (good.replace(b'"status":"final"', b'"status":"fin\\ud800al"', 1), "surrogate"),
    ):
        assert bad != good
        assert_outcome(call(client, bad), 400, "request body is not valid JSON", fragment)


def test_a_huge_number_in_an_element_never_read_is_skipped(client: FlaskClient) -> None:
    prefetch = full_prefetch("p")
    usual_answer = call(client, orjson.dumps(patient_view("p", prefetch))).json
    raw = orjson.dumps(patient_view("p", prefetch)).replace(
        b'"unit":"{score}"', b'"unit":"{score}","referenceRange":[{"high":{"value":1e400}}]', 1)
    assert b"1e400" in raw
    response = call(client, raw)
    assert response.status_code == 200
    assert [c["summary"] for c in response.json["cards"]] == [c["summary"] for c in usual_answer["cards"]]


def test_a_huge_number_never_read_is_refused_once_the_bundle_goes_back_to_dicts(client: FlaskClient) -> None:
    """When a typed Bundle must be read as dicts (here for a preliminary score), the general path reads it, and
    orjson refuses the number as it refuses it in any body."""
    prefetch = full_prefetch("p")
    prefetch["pain"]["entry"][0]["resource"]["status"] = "preliminary"
    raw = orjson.dumps(patient_view("p", prefetch)).replace(
        b'"unit":"{score}"', b'"unit":"{score}","referenceRange":[{"high":{"value":1e400}}]', 1)
    assert b"1e400" in raw
    assert_outcome(call(client, raw), 400, "request body is not valid JSON", "number is infinity")

