"""The service as an EHR meets it: `pacing-cds serve` over HTTP, a real FHIR server, a database on disk."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from cds.store.database import Store
from tests.conftest import ROOT, LiveService
from tests.support import data
from tests.support.examples import example_path
from tests.support.fhir_server import TOKEN, FhirServer
from tests.support.processes import ServerProcess, free_port

pytestmark = pytest.mark.slow  # starts the service and a FHIR server

Start = Callable[..., LiveService]


def live_store(service: LiveService) -> Store:
    return Store(service.env["PACING_CDS_DATABASE_URL"])


def declared_services() -> list[dict[str, Any]]:
    """rules/services.yaml as discovery must list it: each {loinc:...}/{snomed:...}/{pa:...} written out from codes.yaml,
    each {status:table} from statuses.yaml (the codes that are current, history or unconfirmed)."""
    rules = ROOT / "rules"
    spec, codes, statuses = (yaml.safe_load((rules / name).read_text())
                             for name in ("services.yaml", "codes.yaml", "statuses.yaml"))

    def expand(match: re.Match[str]) -> str:
        system = match.group(1)
        lists = [codes["observations"][n] if system == "loinc" else codes[n] for n in match.group(2).split(",")]
        return ",".join(f"{codes['systems'][system]}|{code}" for listed in lists for code in listed)

    def status(match: re.Match[str]) -> str:
        return ",".join(code for code, meaning in statuses["tables"][match.group(1)]["codes"].items()
                        if meaning != "ignored")

    prefetch = {key: re.sub(r"\{status:([a-z-]+)\}", status,
                            re.sub(r"(?<!\{)\{(loinc|snomed|pa):([a-z0-9_,]+)\}", expand, query))
                for key, query in spec["prefetch"].items()}
    return [{**{k: entry[k] for k in ("hook", "title", "description", "id")}, "prefetch": prefetch,
             "usageRequirements": spec["usage"]} for entry in spec["services"]]


def test_make_run_serves_discovery_on_the_configured_port(tmp_path: Path, http: httpx.Client) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PACING_CDS_", "MAKE"))}
    env.update({"PACING_CDS_PORT": str(port), "PACING_CDS_DATABASE_URL": f"sqlite:///{tmp_path / 'run.db'}",
                "PATH": f"{Path(sys.executable).parent}:{env.get('PATH', '')}"})
    server = ServerProcess(["make", "-s", "-C", str(ROOT), "run"], env=env, cwd=ROOT, log_path=tmp_path / "run.log")
    try:
        server.wait_ready(f"http://127.0.0.1:{port}/cds-services", timeout_s=300)
        response = http.get(f"http://127.0.0.1:{port}/cds-services")
        assert response.status_code == 200
        assert [s["id"] for s in response.json()["services"]] == [s["id"] for s in declared_services()]
    finally:
        server.stop()


def test_discovery_is_exactly_the_declared_services(live_service: Start, http: httpx.Client) -> None:
    service = live_service()
    response = http.get(f"{service.url}/cds-services")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body == {"services": declared_services()}
    assert [(s["id"], s["hook"]) for s in body["services"]] == [
        ("pacing-review", "patient-view"), ("exercise-order-select", "order-select"),
        ("exercise-order-sign", "order-sign")]
    spec_fields = {key for s in data.spec_example("discovery.json")["services"] for key in s}
    for entry in body["services"]:
        assert set(entry) <= spec_fields | {"usageRequirements"}
        assert {"hook", "description", "id", "title", "prefetch", "usageRequirements"} <= set(entry)


def test_call_without_prefetch_is_answered_from_the_fhir_server(live_service: Start, fhir_server: FhirServer,
                                                                 http: httpx.Client) -> None:
    pid = "e2e-fallback"
    fhir_server.load([data.patient(pid), data.condition(pid, f"{pid}-c1"), *data.daily_steps(pid, 21),
                      *data.pain_scores(pid, 14), data.exercise_order(pid, f"{pid}-sr1")])
    service = live_service()
    body = data.patient_view(pid, fhir_server=fhir_server.base_url, token=TOKEN)
    response = http.post(f"{service.url}/cds-services/pacing-review", json=body)
    assert response.status_code == 200, response.text
    # Steps and pain from the FHIR server, under an exercise order with no session this week: the dose is held, and
    # 3,000 steps a day is inactivity.
    card, pattern = response.json()["cards"]
    assert card["source"]["topic"]["code"] == "hold" and "nothing of the plan recorded" in card["summary"]
    assert pattern["source"]["topic"]["code"] == "inactivity"
    store = live_store(service)
    try:
        [event] = store.audit_events(body["hookInstance"])
    finally:
        store.close()
    assert event["status"] == 200
    sources = event["data_sources"]
    assert sources["activity"] == {"source": "fhirServer", "count": 21}
    assert sources["pain"] == {"source": "fhirServer", "count": 14}
    assert sources["patient"] == {"source": "fhirServer", "count": 1}
    assert sources["exercise-orders"] == {"source": "fhirServer", "count": 1}
    assert TOKEN not in service.log()


def test_every_error_status_over_http(live_service: Start, http: httpx.Client) -> None:
    service = live_service(max_body_bytes="65536")
    url = f"{service.url}/cds-services/pacing-review"
    statuses = {
        "400": http.post(url, content=b"{not json", headers={"Content-Type": "application/json"}),
        "404": http.post(f"{service.url}/cds-services/unknown", json=data.patient_view("p")),
        "405": http.get(url),
        "412": http.post(url, json=data.patient_view("p")),
        "413": http.post(url, content=b"{" + b" " * 200_000 + b"}", headers={"Content-Type": "application/json"}),
        "415": http.post(url, content=b"hook=patient-view", headers={"Content-Type": "text/plain"}),
    }
    for expected, response in statuses.items():
        assert str(response.status_code) == expected, (expected, response.text)
        assert response.json()["resourceType"] == "OperationOutcome"
        assert response.json()["issue"][0]["details"]["text"]
    assert statuses["405"].headers["Allow"] == "OPTIONS, POST"
    assert http.get(f"{service.url}/healthz").json() == {"status": "ok"}


def test_every_call_is_audited_once_across_workers(live_service: Start, http: httpx.Client) -> None:
    service = live_service(workers="2", threads="4")
    bodies = [data.patient_view(f"p{i}", data.full_prefetch(f"p{i}")) for i in range(40)]
    for body in bodies:
        assert http.post(f"{service.url}/cds-services/pacing-review", json=body).status_code == 200
    store = live_store(service)
    try:
        events = store.audit_events()
    finally:
        store.close()
    assert sorted(e["hook_instance"] for e in events) == sorted(b["hookInstance"] for b in bodies)
    assert {e["patient_id"] for e in events} == {f"p{i}" for i in range(40)}


def test_feedback_survives_a_restart(live_service: Start, http: httpx.Client, tmp_path: Path) -> None:
    service = live_service()
    feedback_url = f"{service.url}/cds-services/pacing-review/feedback"
    examples = [data.spec_example(n) for n in ("feedback-accepted.json", "feedback-overridden.json",
                                               "feedback-overridden-reason.json")]
    for example in examples:
        assert http.post(feedback_url, json=example).json() == {"received": 1, "stored": 1}
    service.stop(signal.SIGKILL)
    service.start()
    assert http.post(feedback_url, json=examples[0]).json() == {"received": 1, "stored": 0}
    report = subprocess.run([str(Path(sys.executable).parent / "pacing-cds"), "feedback", "report"],
                            env={**service.env}, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert report.returncode == 0, report.stderr
    line = next(line for line in report.stdout.splitlines() if line.startswith("total"))
    assert line.split() == ["total", "3", "1", "2"]  # three cards: one accepted, two overridden
    assert "events received: 3 (3 cards)" in report.stdout
    # The spec example's reason is from another code system than the rule set's: shown as unknown, not dropped.
    assert re.search(r"d7ecf885\s{2,}\(unknown reason\) system https://example.com/cds-hooks/override-reason-system",
                     report.stdout)


def test_logs_hold_no_token_and_no_patient_data(live_service: Start, fhir_server: FhirServer,
                                                http: httpx.Client) -> None:
    pid = "e2e-logs"
    fhir_server.load([data.patient(pid), *data.daily_steps(pid, 3)])
    service = live_service(log_level="DEBUG")
    body: dict[str, Any] = data.patient_view(pid, fhir_server=fhir_server.base_url, token=TOKEN)
    assert http.post(f"{service.url}/cds-services/pacing-review", json=body).status_code == 200
    bad = data.with_change(body, "fhirServer", f"http://127.0.0.1:{free_port()}/fhir")
    assert http.post(f"{service.url}/cds-services/pacing-review", json=bad).status_code == 412
    service.stop()
    log = (service.workdir / "service.log").read_text()
    assert body["hookInstance"] in log
    for secret in (TOKEN, "Testperson", json.dumps(body["context"])):
        assert secret not in log


def test_cards_are_audited_and_feedback_reports_their_topic(live_service: Start, http: httpx.Client,
                                                            tmp_path: Path) -> None:
    service = live_service(now="2026-11-20T09:00:00Z")
    body = json.loads(example_path("progress-walking").read_text())
    answer = http.post(f"{service.url}/cds-services/pacing-review", json=body).json()
    [card] = answer["cards"]
    store = live_store(service)
    try:
        [event] = store.audit_events(body["hookInstance"])
    finally:
        store.close()
    assert event["card_topics"] == ["progress"]
    assert event["rule_set_version"] and event["rule_set_version"] in card["source"]["label"]
    feedback = {"feedback": [{"card": card["uuid"], "outcome": "accepted", "outcomeTimestamp": "2026-11-20T09:05:00Z",
                              "acceptedSuggestions": [{"id": card["suggestions"][0]["uuid"]}]}]}
    assert http.post(f"{service.url}/cds-services/pacing-review/feedback", json=feedback).json()["stored"] == 1
    report = subprocess.run([str(Path(sys.executable).parent / "pacing-cds"), "feedback", "report"],
                            env={**service.env}, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert any(line.split() == ["pacing-review", "progress", "1", "1", "0"] for line in report.stdout.splitlines())


def test_production_without_issuers_refuses_to_start(tmp_path: Path) -> None:
    result = subprocess.run([str(Path(sys.executable).parent / "pacing-cds"), "serve"], cwd=tmp_path,
                            env={"PATH": "/usr/bin:/bin", "PACING_CDS_ENV": "production",
                                 "PACING_CDS_PORT": str(free_port())},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "PACING_CDS_ISSUERS_FILE" in result.stderr


def test_with_issuers_every_call_over_http_needs_a_token(live_service: Start, http: httpx.Client,
                                                        tmp_path: Path) -> None:
    import time
    import uuid

    import jwt
    import yaml
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP384R1())
    jwk = {**json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key())), "kid": "k1"}
    issuers = tmp_path / "issuers.yaml"
    issuers.write_text(yaml.safe_dump({"issuers": [{"iss": "https://ehr.example.org", "jwks": {"keys": [jwk]}}]}))
    service = live_service(issuers_file=str(issuers), public_base_url="https://cds.example.org")
    assert http.get(f"{service.url}/cds-services").status_code == 401

    def signed(path: str) -> dict[str, str]:
        claims = {"iss": "https://ehr.example.org", "aud": "https://cds.example.org" + path,
                  "exp": int(time.time()) + 60, "iat": int(time.time()), "jti": str(uuid.uuid4())}
        return {"Authorization": "Bearer " + jwt.encode(claims, key, algorithm="ES384",
                                                        headers={"kid": "k1", "typ": "JWT"})}

    assert http.get(f"{service.url}/cds-services", headers=signed("/cds-services")).status_code == 200
    headers = signed("/cds-services")
    assert http.get(f"{service.url}/cds-services", headers=headers).status_code == 200
    assert http.get(f"{service.url}/cds-services", headers=headers).status_code == 401, "replay refused"
    assert headers["Authorization"] not in service.log()
