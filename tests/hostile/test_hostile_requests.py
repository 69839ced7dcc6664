"""Hostile and malformed requests against the running server: each gets the right 4xx with an OperationOutcome,
or a correct 200; never a 5xx; the server stays up after every one."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.support import data
from tests.support.examples import example

PV = "/cds-services/pacing-review"
SIGN = "/cds-services/exercise-order-sign"
FEEDBACK = "/cds-services/pacing-review/feedback"


def valid() -> dict[str, Any]:
    return example("progress-walking")[0]


def changed(path: str, value: Any, base: Callable[[], dict[str, Any]] = valid) -> bytes:
    body = base()
    *parents, last = path.split(".")
    node: Any = body
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if isinstance(node, list):
        node[int(last)] = value
    elif value is ...:
        del node[last]
    else:
        node[last] = value
    return json.dumps(body).encode()


def first_obs(path: str) -> str:
    return f"prefetch.pain.entry.0.resource.{path}"


def sign_body() -> dict[str, Any]:
    return example("order-dose-jump")[0] | {"hook": "order-sign"}


CASES: list[tuple[str, str, bytes, str, set[int]]] = [
    # name, path, body, content type, accepted statuses
    ("invalid JSON", PV, b"{\"hook\": ", "application/json", {400}),
    ("trailing garbage", PV, b"{}}}", "application/json", {400}),
    ("empty body", PV, b"", "application/json", {400}),
    ("JSON null", PV, b"null", "application/json", {400}),
    ("JSON array", PV, b"[]", "application/json", {400}),
    ("NaN", PV, b'{"hook": NaN}', "application/json", {400}),
    ("Infinity", PV, b'{"hook": Infinity}', "application/json", {400}),
    ("number out of range", PV, b'{"hook": 1e999}', "application/json", {400}),
    ("deep nesting", PV, b"[" * 200_000 + b"]" * 200_000, "application/json", {400, 413}),
    ("invalid UTF-8", PV, b'{"hook": "\xff\xfe"}', "application/json", {400}),
    ("UTF-16 with BOM", PV, '{"hook": "patient-view"}'.encode("utf-16"), "application/json", {400}),
    ("10 MB body", PV, b'{"x": "' + b"a" * 10_000_000 + b'"}', "application/json", {413}),
    ("text/plain", PV, json.dumps(valid()).encode(), "text/plain", {415}),
    ("form encoded", PV, b"hook=patient-view", "application/x-www-form-urlencoded", {415}),
    ("XML", PV, b"<request/>", "application/xml", {415}),
    ("wrong hook", PV, changed("hook", "order-sign"), "application/json", {400}),
    ("unknown hook", PV, changed("hook", "patient-viewed"), "application/json", {400}),
    ("hook as a number", PV, changed("hook", 1), "application/json", {400}),
    ("hookInstance as an object", PV, changed("hookInstance", {"a": 1}), "application/json", {400}),
    ("hookInstance too long", PV, changed("hookInstance", "h" * 500), "application/json", {400}),
    ("hookInstance with control characters", PV, changed("hookInstance", "a\nb\u0000"), "application/json", {400}),
    ("context as a list", PV, changed("context", []), "application/json", {400}),
    ("context null", PV, changed("context", None), "application/json", {400}),
    ("patientId null", PV, changed("context.patientId", None), "application/json", {400}),
    ("patientId a number", PV, changed("context.patientId", 12), "application/json", {400}),
    ("patientId with a slash", PV, changed("context.patientId", "a/../b"), "application/json", {400}),
    ("patientId unicode", PV, changed("context.patientId", "пациент"), "application/json", {400}),
    ("patientId 65 characters", PV, changed("context.patientId", "p" * 65), "application/json", {400}),
    ("userId of a Device", PV, changed("context.userId", "Device/1"), "application/json", {400}),
    ("userId null", PV, changed("context.userId", None), "application/json", {400}),
    ("prefetch a string", PV, changed("prefetch", "all"), "application/json", {400}),
    ("prefetch null", PV, changed("prefetch", None), "application/json", {412}),
    ("prefetch key null: no data", PV, changed("prefetch.pain", None), "application/json", {200}),
    ("prefetch key a number", PV, changed("prefetch.pain", 7), "application/json", {400}),
    ("prefetch without resourceType", PV, changed("prefetch.patient", {"id": "x"}), "application/json", {400}),
    ("prefetch resourceType null", PV, changed("prefetch.patient.resourceType", None), "application/json", {400}),
    ("two Patients for the patient key", PV, changed("prefetch.patient", data.searchset(
        [data.patient("progress-walking"), data.patient("someone")])), "application/json", {400}),
    ("another Patient", PV, changed("prefetch.patient", data.patient("someone")), "application/json", {400}),
    ("a Patient among the pain scores", PV, changed("prefetch.pain.entry.0.resource", data.patient("x")),
     "application/json", {400}),
    ("unknown resourceType", PV, changed("prefetch.pain.entry.0.resource.resourceType", "Unicorn"),
     "application/json", {400}),
    ("entry without resource", PV, changed("prefetch.pain.entry.0", {"fullUrl": "x"}), "application/json", {400}),
    ("entry a string", PV, changed("prefetch.pain.entry.0", "x"), "application/json", {400}),
    ("entry list an object", PV, changed("prefetch.pain.entry", {"a": 1}), "application/json", {400}),
    ("another patient's observation", PV, changed(first_obs("subject"), {"reference": "Patient/other"}),
     "application/json", {400}),
    ("unknown unit", PV, changed(first_obs("valueQuantity"), {"value": 5, "code": "furlong"}),
     "application/json", {200}),
    ("non-numeric value", PV, changed(first_obs("valueQuantity.value"), "high"), "application/json", {200}),
    ("boolean value", PV, changed(first_obs("valueQuantity.value"), True), "application/json", {200}),
    ("negative pain score", PV, changed(first_obs("valueQuantity.value"), -3), "application/json", {200}),
    ("huge number", PV, changed(first_obs("valueQuantity.value"), 10**300), "application/json", {200}),
    ("date without time zone", PV, changed(first_obs("effectiveDateTime"), "2026-11-19T20:00:00"),
     "application/json", {200}),
    ("date only", PV, changed(first_obs("effectiveDateTime"), "2026-11-19"), "application/json", {200}),
    ("not a date", PV, changed(first_obs("effectiveDateTime"), "last Tuesday"), "application/json", {200}),
    ("date far in the future", PV, changed(first_obs("effectiveDateTime"), "9999-12-31T23:59:59Z"),
     "application/json", {200}),
    ("status null", PV, changed(first_obs("status"), None), "application/json", {200}),
    ("coding a string", PV, changed(first_obs("code"), {"coding": "72514-3"}), "application/json", {200}),
    ("unicode everywhere", PV, changed("prefetch.patient.name", [{"family": "Ωμέγα 🧪 \u202e", "given": ["\u0000"]}]),
     "application/json", {200}),
    ("order timing nonsense", PV, changed("prefetch.exercise-orders.entry.0.resource.occurrenceTiming",
                                          {"repeat": {"frequency": "3", "period": 0, "periodUnit": "yr"}}),
     "application/json", {200}),
    ("fhirAuthorization without fhirServer", PV, changed("fhirAuthorization", {
        "access_token": "x", "token_type": "Bearer", "expires_in": 1, "scope": "s", "subject": "c"}),
     "application/json", {400}),
    ("fhirServer not a URL", PV, changed("fhirServer", "javascript:alert(1)"), "application/json", {400}),
    ("extension a list", PV, changed("extension", [1]), "application/json", {400}),
    ("order-sign without draftOrders", SIGN, changed("context.draftOrders", ..., sign_body), "application/json",
     {400}),
    ("draftOrders not a Bundle", SIGN, changed("context.draftOrders", {"resourceType": "Parameters"}, sign_body),
     "application/json", {400}),
    ("draft entry without resourceType", SIGN, changed("context.draftOrders.entry.0.resource", {"id": "x"},
                                                       sign_body), "application/json", {400}),
    ("draft order without dose", SIGN, changed("context.draftOrders.entry.0.resource.occurrenceTiming", ...,
                                               sign_body), "application/json", {200}),
    ("feedback not a list", FEEDBACK, b'{"feedback": {"card": "x"}}', "application/json", {400}),
    ("feedback item null", FEEDBACK, b'{"feedback": [null]}', "application/json", {400}),
    ("feedback outcome unknown", FEEDBACK, json.dumps({"feedback": [{"card": "c", "outcome": "liked",
                                                                      "outcomeTimestamp": "2026-11-20T10:00:00Z"}]}
                                                      ).encode(), "application/json", {400}),
    ("feedback 1001 items", FEEDBACK, json.dumps({"feedback": [{"card": f"c{i}", "outcome": "overridden",
                                                                "outcomeTimestamp": "2026-11-20T10:00:00Z"}
                                                               for i in range(1001)]}).encode(),
     "application/json", {400}),
    ("unknown service", "/cds-services/%2e%2e%2fadmin", json.dumps(valid()).encode(), "application/json", {404}),
    ("path traversal", "/cds-services/../../etc/passwd", b"{}", "application/json", {404, 405}),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    import os

    from tests.conftest import LiveService as Live
    from tests.support.processes import free_port

    workdir = tmp_path_factory.mktemp("hostile")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PACING_CDS_")}
    port = free_port()
    env.update({"PACING_CDS_PORT": str(port), "PACING_CDS_DATABASE_URL": f"sqlite:///{workdir / 'h.db'}",
                "PACING_CDS_NOW": "2026-11-20T09:00:00Z", "PACING_CDS_MAX_BODY_BYTES": str(5 * 1024 * 1024)})
    live = Live(workdir, env, port).start()
    yield live.url
    live.stop()
    log = (workdir / "service.log").read_text()
    assert "Traceback" not in log and "exited with code" not in log
    assert "Ωμέγα" not in log and "Testperson" not in log, "no patient data in the log"


def test_there_are_at_least_60_cases() -> None:
    assert len(CASES) >= 60


@pytest.mark.parametrize(("name", "path", "body", "content_type", "expected"), CASES, ids=[c[0] for c in CASES])
def test_hostile_request(server: str, name: str, path: str, body: bytes, content_type: str,
                         expected: set[int]) -> None:
    with httpx.Client(timeout=60) as http:
        response = http.post(server + path, content=body, headers={"Content-Type": content_type})
        assert response.status_code in expected, (name, response.status_code, response.text[:300])
        if response.status_code >= 400:
            outcome = response.json()
            assert outcome["resourceType"] == "OperationOutcome" and outcome["issue"][0]["details"]["text"]
        else:
            assert "cards" in response.json() or "received" in response.json()
        assert "Traceback" not in response.text
        assert http.get(server + "/healthz").status_code == 200, "the server is still up"


def test_null_in_every_position_of_the_request(server: str) -> None:
    """Each field of a valid request, and of its first resource of each key, set to null in turn."""
    base = valid()
    paths = [k for k in base] + [f"context.{k}" for k in base["context"]] + [f"prefetch.{k}" for k in base["prefetch"]]
    for key, bundle in base["prefetch"].items():
        if bundle.get("entry"):
            paths += [f"prefetch.{key}.entry.0.resource.{f}" for f in bundle["entry"][0]["resource"]]
    statuses: dict[int, int] = {}
    with httpx.Client(timeout=30) as http:
        for path in paths:
            response = http.post(server + PV, content=changed(path, None), headers={"Content-Type": "application/json"})
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            assert response.status_code in (200, 400, 412), (path, response.text[:300])
    print(f"\nnull in {len(paths)} positions: statuses {statuses}")
    assert statuses.get(200) and statuses.get(400), statuses
    assert len(paths) >= 40
