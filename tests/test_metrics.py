"""GET /metrics of a real multi-worker `pacing-cds serve`: counts after a known sequence of calls."""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import ec
from prometheus_client.parser import text_string_to_metric_families

from cds.knowledge import load_knowledge
from cds.services import services_of
from tests.conftest import ROOT, LiveService
from tests.support import data
from tests.support.fhir_server import TOKEN, FhirServer
from tests.support.processes import free_port

Start = Callable[..., LiveService]
PROGRESS = json.loads((ROOT / "fhir_examples/progress-walking/request.json").read_text())
DOSE_JUMP = json.loads((ROOT / "fhir_examples/order-dose-jump/request.json").read_text())
FEEDBACK = json.loads((ROOT / "docs/examples/feedback.json").read_text())
ISS = "https://ehr.example.org"
BASE = "https://cds.example.org"


Samples = dict[tuple[str, frozenset[Any]], float]


def scrape(http: httpx.Client, url: str, headers: dict[str, str] | None = None) -> Samples:
    response = http.get(url, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain")
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(response.text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def worker_files(tmp: Path) -> set[str]:
    """The pids that wrote counters into the server's multiprocess folder (made under TMPDIR)."""
    return {p.stem.split("_")[1] for p in tmp.glob("pacing-cds-metrics-*/counter_*.db")}


def test_metrics_count_every_worker_after_a_known_sequence(live_service: Start, fhir_server: FhirServer,
                                                            http: httpx.Client, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    service = live_service(now="2026-11-20T09:00:00Z", workers="2")
    url = service.url
    statuses: Counter[tuple[str, int]] = Counter()
    cards: Counter[tuple[str, str]] = Counter()

    def call(service_id: str, body: dict[str, Any]) -> None:
        response = httpx.post(f"{url}/cds-services/{service_id}", json=body, timeout=30)
        statuses[(service_id, response.status_code)] += 1
        for card in response.json().get("cards", []) if response.status_code == 200 else []:
            cards[(card["source"]["topic"]["code"], card["indicator"])] += 1

    # Concurrent batches until both workers have answered (each writes its own file), a bounded number of times.
    progress_calls = 0
    with ThreadPoolExecutor(8) as pool:
        while len(worker_files(tmp)) < 2 and progress_calls < 160:
            list(pool.map(lambda _: call("pacing-review", {**PROGRESS, "hookInstance": str(uuid.uuid4())}),
                          range(16)))
            progress_calls += 16
    assert len(worker_files(tmp)) == 2, "both workers answered calls"
    for _ in range(3):
        call("exercise-order-select", {**DOSE_JUMP, "hookInstance": str(uuid.uuid4())})
    for _ in range(2):  # no prefetch and no fhirServer: 412
        call("pacing-review", data.patient_view("metrics-bare"))
    pid = "metrics-fetched"
    fhir_server.load([data.patient(pid), *data.daily_steps(pid, 7), *data.pain_scores(pid, 7)])
    call("pacing-review", data.patient_view(pid, fhir_server=fhir_server.base_url, token=TOKEN))
    call("pacing-review", data.patient_view(pid, fhir_server=f"http://127.0.0.1:{free_port()}/fhir", token=TOKEN))
    for _ in range(2):
        assert http.post(f"{url}/cds-services/pacing-review/feedback", json=FEEDBACK).status_code == 200
    with sqlite3.connect(service.env["PACING_CDS_DATABASE_URL"].removeprefix("sqlite:///")) as db:
        db.execute("DROP TABLE issued_card")  # the next call's audit record cannot be written
        db.execute("DROP TABLE audit_event")
    call("pacing-review", {**PROGRESS, "hookInstance": str(uuid.uuid4())})

    services = services_of(load_knowledge(ROOT / "rules"))
    templates = len(services["pacing-review"].templates)
    optional = services["pacing-review"].optional_keys
    assert statuses[("pacing-review", 200)] == progress_calls + 2 and statuses[("pacing-review", 412)] == 3
    assert cards[("progress", "info")] == progress_calls + 1
    for _ in range(6):  # every scrape, whichever worker answers it, adds up both workers
        samples = scrape(http, f"{url}/metrics")
        for (service_id, status), count in statuses.items():
            assert value(samples, "pacing_cds_calls_total", service=service_id, status=str(status)) == count
            assert value(samples, "pacing_cds_call_duration_seconds_count", service=service_id) == sum(
                n for (s, _), n in statuses.items() if s == service_id)
        for (topic, indicator), count in cards.items():
            assert value(samples, "pacing_cds_cards_total", topic=topic, indicator=indicator, mode="shown") == count
        assert value(samples, "pacing_cds_prefetch_keys_total", source="prefetch") == templates * (
            progress_calls + 1) + 3 * len(services["exercise-order-select"].templates)
        # The fetched call: each key from the FHIR server, or none for an optional key the server cannot search.
        fetched = value(samples, "pacing_cds_prefetch_keys_total", source="fetched")
        assert fetched >= templates - len(optional)
        assert fetched + value(samples, "pacing_cds_prefetch_keys_total", source="null") == templates
        assert value(samples, "pacing_cds_fhir_requests_total", outcome="ok") >= fetched
        assert sum(value(samples, "pacing_cds_fhir_requests_total", outcome=o)
                   for o in ("ok", "http_error", "invalid", "timeout")) == templates
        assert value(samples, "pacing_cds_fhir_requests_total", outcome="unreachable") == templates
        assert value(samples, "pacing_cds_fhir_request_duration_seconds_count") == 2 * templates
        assert value(samples, "pacing_cds_feedback_items_total", outcome="overridden") == 2
        assert value(samples, "pacing_cds_audit_write_failures_total") == 1
        assert value(samples, "pacing_cds_jwt_refusals_total", reason="missing") == 0


def _issuer(tmp_path: Path) -> tuple[Path, Any]:
    key = ec.generate_private_key(ec.SECP384R1())
    jwk = {**json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key())), "kid": "k1"}
    issuers = tmp_path / "issuers.yaml"
    issuers.write_text(yaml.safe_dump({"issuers": [{"iss": ISS, "jwks": {"keys": [jwk]}}]}))
    return issuers, key


def _signed(key: Any, path: str, audience: str = BASE) -> dict[str, str]:
    claims = {"iss": ISS, "aud": audience + path, "exp": int(time.time()) + 60, "iat": int(time.time()),
              "jti": str(uuid.uuid4())}
    return {"Authorization": "Bearer " + jwt.encode(claims, key, algorithm="ES384",
                                                    headers={"kid": "k1", "typ": "JWT"})}


def test_with_auth_metrics_are_protected_like_discovery_and_count_refusals(live_service: Start, http: httpx.Client,
                                                                           tmp_path: Path) -> None:
    issuers, key = _issuer(tmp_path)
    service = live_service(issuers_file=str(issuers), public_base_url=BASE)
    assert http.get(f"{service.url}/metrics").status_code == 401
    assert http.get(f"{service.url}/cds-services").status_code == 401
    wrong = _signed(key, "/cds-services", audience="https://elsewhere.example.org")
    assert http.get(f"{service.url}/cds-services", headers=wrong).status_code == 401
    headers = _signed(key, "/cds-services")
    assert http.get(f"{service.url}/cds-services", headers=headers).status_code == 200
    assert http.get(f"{service.url}/cds-services", headers=headers).status_code == 401
    samples = scrape(http, f"{service.url}/metrics", _signed(key, "/metrics"))
    assert value(samples, "pacing_cds_jwt_refusals_total", reason="missing") == 2
    assert value(samples, "pacing_cds_jwt_refusals_total", reason="audience") == 1
    assert value(samples, "pacing_cds_jwt_refusals_total", reason="replayed") == 1
    assert value(samples, "pacing_cds_replay_cache_errors_total") == 0


def test_metrics_port_serves_without_auth_and_counts_replay_cache_errors(live_service: Start, http: httpx.Client,
                                                                        tmp_path: Path) -> None:
    issuers, key = _issuer(tmp_path)
    metrics_port = free_port()
    service = live_service(issuers_file=str(issuers), public_base_url=BASE, metrics_port=str(metrics_port),
                           redis_url=f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    for _ in range(2):
        assert http.get(f"{service.url}/cds-services", headers=_signed(key, "/cds-services")).status_code == 503
    assert http.get(f"{service.url}/metrics").status_code == 401
    assert http.get(f"{service.url}/metrics", headers=_signed(key, "/metrics")).status_code == 503
    samples = scrape(http, f"http://127.0.0.1:{metrics_port}/metrics")
    assert value(samples, "pacing_cds_replay_cache_errors_total") == 3
    assert value(samples, "pacing_cds_jwt_refusals_total", reason="missing") == 1


def test_metrics_port_takes_metrics_off_the_service_port(live_service: Start, http: httpx.Client) -> None:
    metrics_port = free_port()
    service = live_service(metrics_port=str(metrics_port))
    assert http.post(f"{service.url}/cds-services/pacing-review", json=PROGRESS).status_code == 200
    assert http.get(f"{service.url}/metrics").status_code == 404
    samples = scrape(http, f"http://127.0.0.1:{metrics_port}/metrics")
    assert value(samples, "pacing_cds_calls_total", service="pacing-review", status="200") == 1
