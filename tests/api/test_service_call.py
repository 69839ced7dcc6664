"""POST /cds-services/{id}: answers, every error status with an OperationOutcome, CORS, audit."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from cds.clinical import dose as dosing
from cds.clinical.records import Dose
from cds.engine import Knowledge
from cds.settings import load_settings
from tests.support import data
from tests.support.rules import VALUES

PATIENT_VIEW = "/cds-services/pacing-review"


def assert_outcome(response: Any, status: int, *fragments: str) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert body["resourceType"] == "OperationOutcome"
    text = body["issue"][0]["details"]["text"]
    for fragment in fragments:
        assert fragment in text
    assert "Traceback" not in response.get_data(as_text=True)
    return body


def post(client: FlaskClient, body: Any, path: str = PATIENT_VIEW, **kwargs: Any) -> Any:
    return client.post(path, data=json.dumps(body), content_type="application/json", **kwargs)


def audit(app: Flask) -> list[dict[str, Any]]:
    return app.extensions["pacing_cds"].store.audit_events()


@pytest.mark.parametrize(("path", "hook"), [
    (PATIENT_VIEW, "patient-view"),
    ("/cds-services/exercise-order-select", "order-select"),
    ("/cds-services/exercise-order-sign", "order-sign"),
])
def test_each_service_answers_its_hook(client: FlaskClient, path: str, hook: str) -> None:
    body = data.patient_view("p1", data.full_prefetch("p1")) if hook == "patient-view" \
        else data.order_request(hook, "p1", minutes=45)
    response = post(client, body, path)
    assert response.status_code == 200
    cards = response.get_json()["cards"]
    if hook == "patient-view":
        # Ten days of steps and pain under a minutes plan, no session this week: the dose is held, and says why
        # (never an empty answer).
        assert [c["source"]["topic"]["code"] for c in cards] == ["hold", "inactivity"]  # 3,000 steps a day
        assert f"nothing of the plan recorded in the last {VALUES['recent_days']:g} days" in cards[0]["summary"]
    else:  # plan 20 min x 3 (60/week); the draft asks 45 min x 3 (135/week)
        assert [c["source"]["topic"]["code"] for c in cards] == ["order-dose-jump"]
        assert cards[0]["suggestions"][0]["actions"][0]["type"] == "update"


def test_spec_request_example_with_its_prefetch_is_answered(client: FlaskClient) -> None:
    """The spec example, its one key kept and the others answered as prefetch, yields 200."""
    body = data.spec_example("request-patient-view.json")
    body["prefetch"] = {**data.full_prefetch("1288992"), "patient": body["prefetch"]["patientToGreet"]}
    response = post(client, body)
    assert response.status_code == 200
    assert "cards" in response.get_json()


def test_call_is_audited_once_without_tokens_or_resources(app: Flask, client: FlaskClient) -> None:
    body = data.patient_view("p-audit", data.full_prefetch("p-audit"))
    assert post(client, body).status_code == 200
    events = audit(app)
    assert len(events) == 1
    event = events[0]
    assert event["hook_instance"] == body["hookInstance"]
    assert (event["service_id"], event["hook"], event["status"]) == ("pacing-review", "patient-view", 200)
    assert (event["patient_id"], event["user_id"]) == ("p-audit", "Practitioner/example")
    assert event["card_topics"] == ["hold", "inactivity"]  # no session this week, 3,000 steps a day
    assert event["duration_ms"] > 0
    assert event["data_sources"]["activity"] == {"source": "prefetch", "count": 10}
    assert "Testperson" not in json.dumps(event, default=str)


def test_failed_calls_are_audited_with_their_status(app: Flask, client: FlaskClient) -> None:
    post(client, {"hook": "patient-view"})
    client.post(PATIENT_VIEW, data="x", content_type="text/plain")
    assert [e["status"] for e in audit(app)] == [400, 415]
    assert "hookInstance" in audit(app)[0]["message"]


def test_unknown_service_is_404_naming_the_known_ones(client: FlaskClient) -> None:
    response = post(client, data.patient_view("p1"), "/cds-services/no-such-service")
    assert_outcome(response, 404, "no-such-service", "pacing-review, exercise-order-select, exercise-order-sign")


def test_unknown_path_is_404(client: FlaskClient) -> None:
    assert_outcome(client.get("/nothing/here"), 404, "/cds-services")


@pytest.mark.parametrize(("method", "path", "allowed"), [
    ("GET", PATIENT_VIEW, "POST"), ("PUT", PATIENT_VIEW, "POST"), ("DELETE", "/cds-services", "GET"),
    ("POST", "/cds-services", "GET"), ("GET", PATIENT_VIEW + "/feedback", "POST"),
])
def test_wrong_method_is_405_with_allow(client: FlaskClient, method: str, path: str, allowed: str) -> None:
    response = client.open(path, method=method)
    assert_outcome(response, 405, f"method {method} is not allowed")
    assert allowed in response.headers["Allow"]


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml",
                                          None])
def test_body_that_is_not_json_is_415(client: FlaskClient, content_type: str | None) -> None:
    body = json.dumps(data.patient_view("p1"))
    response = client.post(PATIENT_VIEW, data=body, content_type=content_type) if content_type \
        else client.post(PATIENT_VIEW, data=body)
    assert_outcome(response, 415, "Content-Type must be application/json")


def test_json_with_charset_or_fhir_json_is_accepted(client: FlaskClient) -> None:
    body = json.dumps(data.patient_view("p1", data.full_prefetch("p1")))
    for content_type in ("application/json; charset=utf-8", "application/fhir+json"):
        assert client.post(PATIENT_VIEW, data=body, content_type=content_type).status_code == 200


def test_body_over_the_limit_is_413(tmp_path: Any) -> None:
    from cds import create_app

    app = create_app(load_settings(database_url=f"sqlite:///{tmp_path / 'x.db'}", max_body_bytes=4096))
    try:
        big = data.patient_view("p1", {"pain": data.searchset(data.pain_scores("p1", 200))})
        assert_outcome(post(app.test_client(), big), 413, "larger than the limit of 4096 bytes")
        small = data.patient_view("p1", None)
        assert post(app.test_client(), small).status_code == 412  # under the limit: read and judged
    finally:
        app.extensions["pacing_cds"].close()


@pytest.mark.parametrize(("raw", "fragment"), [
    ("{", "not valid JSON"), ("", "empty"), ("[1, 2]", "must be a JSON object, not a JSON list"),
    ('"text"', "not a JSON str"), ("{\"hook\": NaN}", "not valid JSON"), ("[" * 100000, "not valid JSON"),
    ("\xff\xfe{}", "not valid JSON"), ("null", "not a JSON NoneType"),
])
def test_malformed_json_is_400(client: FlaskClient, raw: str, fragment: str) -> None:
    response = client.post(PATIENT_VIEW, data=raw.encode("latin-1"), content_type="application/json")
    assert_outcome(response, 400, fragment)


@pytest.mark.parametrize(("change", "fragment"), [
    (("hook", ...), "hook: Field required"),
    (("hookInstance", ...), "hookInstance: Field required"),
    (("context", ...), "context: Field required"),
    (("hook", 7), "hook: Input should be a valid string"),
    (("context", "p1"), "context: Input should be a valid dictionary"),
    (("context.patientId", ...), "context.patientId: Field required"),
    (("context.patientId", 42), "context.patientId: Input should be a valid string"),
    (("context.patientId", "has space"), "context.patientId: must be a FHIR id"),
    (("context.userId", "Device/1"), "context.userId: must be a reference Type/id"),
    (("prefetch", []), "prefetch: Input should be a valid dictionary"),
    (("fhirServer", "not a url"), "fhirServer: must be an absolute http(s) URL"),
    (("hookInstance", ""), "hookInstance: String should have at least 1 character"),
])
def test_invalid_request_is_400_naming_the_field(client: FlaskClient, change: tuple[str, Any],
                                                 fragment: str) -> None:
    body = data.with_change(data.patient_view("p1", data.full_prefetch("p1")), *change)
    body_out = assert_outcome(post(client, body), 400, fragment)
    assert body_out["issue"][0]["code"] == "invalid"


def test_request_extension_object_is_accepted(client: FlaskClient) -> None:
    body = data.patient_view("p1", data.full_prefetch("p1"))
    body["extension"] = {"com.example.timestamp": "2017-11-27T22:13:25Z"}
    assert post(client, body).status_code == 200
    assert_outcome(post(client, {**body, "extension": "x"}), 400, "extension: Input should be a valid dictionary")


def test_wrong_hook_for_the_service_is_400(client: FlaskClient) -> None:
    body = data.order_request("order-sign", "p1")
    assert_outcome(post(client, body, PATIENT_VIEW), 400, "answers the patient-view hook, not 'order-sign'")


def test_fhir_authorization_needs_fhir_server_and_its_fields(client: FlaskClient) -> None:
    body = data.patient_view("p1", data.full_prefetch("p1"), fhir_server="https://ehr.example.org/fhir",
                             token="secret-abc")
    assert_outcome(post(client, data.with_change(body, "fhirServer", ...)), 400, "fhirServer is required")
    response = post(client, data.with_change(body, "fhirAuthorization.token_type", "MAC"))
    outcome = assert_outcome(response, 400, "fhirAuthorization.token_type")
    assert "secret-abc" not in json.dumps(outcome)


@pytest.mark.parametrize(("hook", "change", "fragment"), [
    ("order-select", ("context.selections", ...), "context.selections: Field required"),
    ("order-select", ("context.selections", []), "context.selections: List should have at least 1 item"),
    ("order-select", ("context.selections", ["ServiceRequest/other"]), "are not in draftOrders"),
    ("order-sign", ("context.draftOrders", ...), "context.draftOrders: Field required"),
    ("order-sign", ("context.draftOrders.resourceType", "Parameters"), "context.draftOrders.resourceType"),
    ("order-sign", ("context.draftOrders.entry", [{"resource": {"id": "x"}}]), "must have a resourceType"),
])
def test_order_hook_context_is_validated(client: FlaskClient, hook: str, change: tuple[str, Any],
                                         fragment: str) -> None:
    path = "/cds-services/exercise-order-select" if hook == "order-select" else "/cds-services/exercise-order-sign"
    body = data.with_change(data.order_request(hook, "p1"), *change)
    assert_outcome(post(client, body, path), 400, fragment)


def test_no_prefetch_and_no_fhir_server_is_412(client: FlaskClient) -> None:
    response = post(client, data.patient_view("p1"))
    body = assert_outcome(response, 412, "prefetch data unobtainable", "no fhirServer")
    assert "prefetch.patient" in body["issue"][0]["expression"]


@pytest.mark.parametrize("junk", [
    {"hook": None, "hookInstance": None, "context": None},
    {"hook": "patient-view", "hookInstance": "x", "context": {"patientId": None, "userId": None}},
    {"hook": "patient-view", "hookInstance": "x", "context": {"userId": "Practitioner/1", "patientId": "p"},
     "prefetch": {"patient": {"resourceType": None}}},
    {"hook": "patient-view", "hookInstance": "x", "context": {"userId": "Practitioner/1", "patientId": "p"},
     "prefetch": {"pain": {"resourceType": "Bundle", "entry": "nope"}}},
    {"hook": "patient-view", "hookInstance": "x", "context": {"userId": "Practitioner/1", "patientId": "p"},
     "prefetch": {"pain": {"resourceType": "Bundle", "entry": [None, 1, "x"]}}},
    {"hook": "patient-view", "hookInstance": "x", "context": {"userId": "Practitioner/1", "patientId": "p"},
     "fhirAuthorization": {"access_token": ["t"]}, "fhirServer": "http://127.0.0.1:1"},
    {"hook": ["patient-view"], "hookInstance": {"a": 1}, "context": [], "prefetch": "x", "extension": 5},
    {"hook": "patient-view", "hookInstance": "x" * 10000, "context": {}},
    {"hook": "\u0000\ud7ff", "hookInstance": "\u202e", "context": {"patientId": "\u00e9"}},
])
def test_junk_never_causes_a_server_error(client: FlaskClient, junk: dict[str, Any]) -> None:
    response = post(client, junk)
    assert 400 <= response.status_code < 500
    assert response.get_json()["resourceType"] == "OperationOutcome"


def test_discovery_and_errors_carry_cors_headers(client: FlaskClient) -> None:
    origin = {"Origin": "https://sandbox.cds-hooks.org"}
    assert client.get("/cds-services", headers=origin).headers["Access-Control-Allow-Origin"] == "*"
    error = client.post(PATIENT_VIEW, data="{", content_type="application/json", headers=origin)
    assert error.status_code == 400
    assert error.headers["Access-Control-Allow-Origin"] == "*"


@pytest.mark.parametrize("path", ["/cds-services", PATIENT_VIEW, PATIENT_VIEW + "/feedback", "/cds-services/x"])
def test_preflight_is_answered_on_every_endpoint(client: FlaskClient, path: str) -> None:
    response = client.options(path, headers={"Origin": "https://sandbox.cds-hooks.org",
                                             "Access-Control-Request-Method": "POST",
                                             "Access-Control-Request-Headers": "authorization, content-type"})
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    assert "Authorization" in response.headers["Access-Control-Allow-Headers"]


def test_configured_origins_are_the_only_ones_allowed(tmp_path: Any) -> None:
    from cds import create_app

    app = create_app(load_settings(database_url=f"sqlite:///{tmp_path / 'x.db'}",
                                   cors_origins="https://ehr.example.org"))
    client = app.test_client()
    try:
        good = client.get("/cds-services", headers={"Origin": "https://ehr.example.org"})
        assert good.headers["Access-Control-Allow-Origin"] == "https://ehr.example.org"
        assert "Origin" in good.headers["Vary"]
        bad = client.options(PATIENT_VIEW, headers={"Origin": "https://evil.example.com",
                                                    "Access-Control-Request-Method": "POST"})
        assert "Access-Control-Allow-Origin" not in bad.headers
        assert "Access-Control-Allow-Methods" not in bad.headers
    finally:
        app.extensions["pacing_cds"].close()


def test_unexpected_failure_is_500_without_a_trace(app: Flask, client: FlaskClient,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug (here in the call path, made to raise) must not leak its trace."""

    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("secret internal state")

    monkeypatch.setattr("cds.api.service_call.answer", broken)
    response = post(client, data.patient_view("p1", data.full_prefetch("p1")))
    body = assert_outcome(response, 500, "internal error; reference")
    assert "secret internal state" not in json.dumps(body)
    assert audit(app)[-1]["status"] == 500


def test_production_requires_an_https_fhir_server(tmp_path: Any) -> None:
    from cds import create_app

    app = create_app(load_settings(database_url=f"sqlite:///{tmp_path / 'p.db'}", env="production",
                                   auth="disabled", public_base_url="https://cds.example.org"))
    try:
        body = data.patient_view("p1", data.full_prefetch("p1"), fhir_server="http://ehr.example.org/fhir",
                                 token="secret-token-1")
        outcome = assert_outcome(post(app.test_client(), body), 400, "fhirServer must be an https URL")
        assert "secret-token-1" not in json.dumps(outcome)
        body["fhirServer"] = "https://ehr.example.org/fhir"
        assert post(app.test_client(), body).status_code == 200
    finally:
        app.extensions["pacing_cds"].close()


@pytest.mark.parametrize(("change", "why"), [
    (lambda prefetch: prefetch["patient"].update(birthDate="2015-03-01"), f"younger than {VALUES['adult_min_age']:g} years"),
    (lambda prefetch: prefetch["conditions"].update(entry=[]), "no active chronic-pain condition"),
])
def test_a_patient_the_rules_are_not_for_gets_no_cards_and_the_audit_says_why(
        app: Flask, client: FlaskClient, change: Any, why: str) -> None:
    prefetch = data.full_prefetch("p-not-for")
    change(prefetch)
    body = data.patient_view("p-not-for", prefetch)
    response = post(client, body)
    assert response.status_code == 200 and response.get_json() == {"cards": []}
    [event] = [e for e in audit(app) if e["hook_instance"] == body["hookInstance"]]
    assert event["status"] == 200 and why in (event["message"] or "")


def test_a_call_with_no_card_says_why_in_its_audit_record(app: Flask, client: FlaskClient,
                                                          knowledge: Knowledge) -> None:
    """An answer without a card is never silent about why: an order that fits the plan, a child out of scope."""
    paced = dosing.progress(Dose(20, 3), knowledge.values)  # plan 20 min x 3: the next paced step fits
    fits = data.order_request("order-sign", "p-fits", minutes=paced.minutes)
    response = post(client, fits, "/cds-services/exercise-order-sign")
    assert response.status_code == 200 and response.get_json()["cards"] == []
    child = data.patient_view("p-child", data.full_prefetch("p-child"))
    child["prefetch"]["patient"]["birthDate"] = "2015-03-01"
    response = post(client, child)
    assert response.status_code == 200 and response.get_json()["cards"] == []
    messages = {event["hook_instance"]: event["message"] for event in audit(app)}
    assert messages[fits["hookInstance"]] == ("no cards: the order fits the pacing plan: ServiceRequest/draft-1 "
                                              f"({paced.minutes} min x 3/week)")
    assert f"younger than {VALUES['adult_min_age']:g} years: out of scope" in messages[child["hookInstance"]]
