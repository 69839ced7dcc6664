"""What an integrator sees of a real `pacing-cds serve` before and around its first call: every metric listed from
the first scrape, a reason phrase on every status line, and a warning at start when the clock is pinned."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
from prometheus_client.parser import text_string_to_metric_families

from cds.metrics import FHIR_OUTCOMES
from tests.conftest import LiveService
from tests.support import data

Start = Callable[..., LiveService]
METRICS = ("pacing_cds_calls", "pacing_cds_call_duration_seconds", "pacing_cds_cards", "pacing_cds_fhir_requests",
           "pacing_cds_fhir_request_duration_seconds", "pacing_cds_prefetch_keys", "pacing_cds_jwt_refusals",
           "pacing_cds_replay_cache_errors", "pacing_cds_feedback_items", "pacing_cds_audit_write_failures")


def test_a_first_scrape_lists_every_metric_and_statuses_carry_their_phrase(live_service: Start) -> None:
    service = live_service()
    with httpx.Client(timeout=30) as http:
        for _ in range(4):  # whichever worker answers: each declared its series when it started
            families = {f.name: f for f in text_string_to_metric_families(http.get(f"{service.url}/metrics").text)}
            assert set(METRICS) <= set(families)
            samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values()
                       for s in f.samples}
            assert samples[("pacing_cds_calls_total", (("service", "pacing-review"), ("status", "200")))] == 0
            assert samples[("pacing_cds_cards_total", (("indicator", "critical"), ("mode", "shown"),
                                                        ("topic", "red-flag")))] == 0
            for outcome in FHIR_OUTCOMES:
                assert samples[("pacing_cds_fhir_requests_total", (("outcome", outcome),))] == 0
        refused = http.post(f"{service.url}/cds-services/pacing-review", json=data.patient_view("no-data"))
        assert (refused.status_code, refused.reason_phrase) == (412, "Precondition Failed")
        missing = http.post(f"{service.url}/cds-services/nothing-here", json={})
        assert (missing.status_code, missing.reason_phrase) == (404, "Not Found")
    assert "PACING_CDS_NOW pins the clock at 2026-11-20T09:00:00+00:00" in service.log()


def test_a_client_that_sends_a_body_over_the_limit_reads_the_413(live_service: Start) -> None:
    """An ordinary client still sending a body four times the limit when it is refused reads the 413, not a
    connection reset; chunked or with its length."""
    service = live_service(max_body_bytes=str(1024 * 1024))
    big = b'{"pad": "' + b"x" * (4 * 1024 * 1024 - 16) + b'"}'

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(big), 64 * 1024):
            yield big[start:start + 64 * 1024]

    with httpx.Client(timeout=30) as http:
        for body in (big, chunks()):
            refused = http.post(f"{service.url}/cds-services/pacing-review", content=body,
                                headers={"Content-Type": "application/json"})
            assert refused.status_code == 413
            assert "larger than the limit of 1048576 bytes" in refused.json()["issue"][0]["details"]["text"]
