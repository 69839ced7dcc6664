"""A hostile FHIR server (a real process) cannot exhaust the service: a drip, a huge body and endless paging
each end within the request deadline, memory stays bounded, and the answer says red flags were not checked."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveService
from tests.fhir.test_faults import audit_of
from tests.support import data

Start = Callable[..., LiveService]
PV = "/cds-services/pacing-review"
DEADLINE_S = 2.0
# The worker's resident memory after a 200 MB answer was offered; the cap the byte limit is meant to hold.
MEMORY_CAP_KB = 400 * 1024


def worker_rss_kb(service: LiveService) -> list[int]:
    """Resident memory of each worker process of the service (children of its gunicorn master)."""
    assert service.process is not None
    master = service.process.proc.pid
    sizes = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
        except OSError:
            continue
        if fields.get("PPid", "").strip() == str(master) and "VmRSS" in fields:
            sizes.append(int(fields["VmRSS"].split()[0]))
    return sizes


def unavailable(response: httpx.Response) -> bool:
    cards = response.json().get("cards", [])
    return [c["source"]["topic"]["code"] for c in cards] == ["data-unavailable"]


def test_a_drip_ends_at_the_deadline_with_a_card(live_service: Start, fault_server: Callable[[str], str],
                                                http: httpx.Client) -> None:
    service = live_service(request_deadline_s=str(DEADLINE_S), fhir_timeout_s="3")
    body = data.patient_view("h1", fhir_server=fault_server("drip"))
    started = time.monotonic()
    response = http.post(service.url + PV, json=body)
    assert response.status_code == 200 and unavailable(response), response.text[:300]
    assert time.monotonic() - started < DEADLINE_S + 8.0  # the drip lasts 28 s; the margin is for a loaded machine
    assert "deadline of 2 s passed" in str(audit_of(service, body["hookInstance"])["message"])


def test_endless_paging_stops_at_the_page_or_entry_cap_before_the_deadline(live_service: Start,
                                                                          fault_server: Callable[[str], str],
                                                                          http: httpx.Client) -> None:
    service = live_service(request_deadline_s="20", fhir_max_pages="5")
    body = data.patient_view("h2", fhir_server=fault_server("endless"))
    response = http.post(service.url + PV, json=body)
    assert response.status_code == 200
    sources = audit_of(service, body["hookInstance"])["data_sources"]
    assert "stopped after 5 pages" in str(sources["pain"]["notes"])  # type: ignore[index]


@pytest.mark.parametrize("mode", ["huge", "huge-unsized"])
def test_a_huge_answer_is_cut_off_at_the_byte_limit(live_service: Start, fault_server: Callable[[str], str],
                                                    http: httpx.Client, mode: str) -> None:
    service = live_service(workers="1", request_deadline_s="20", fhir_max_bytes=str(8 * 1024 * 1024))
    body = data.patient_view("h3", fhir_server=fault_server(mode))
    response = http.post(service.url + PV, json=body)
    assert response.status_code == 412
    assert "larger than the limit of 8388608 bytes" in response.json()["issue"][0]["details"]["text"]
    assert all(rss < MEMORY_CAP_KB for rss in worker_rss_kb(service)), worker_rss_kb(service)


def test_drips_do_not_starve_the_next_caller(live_service: Start, fault_server: Callable[[str], str]) -> None:
    service = live_service(workers="1", request_deadline_s=str(DEADLINE_S))
    drip, broken = fault_server("drip"), fault_server("500")
    with httpx.Client(timeout=30) as http, ThreadPoolExecutor(8) as pool:
        slow = [pool.submit(http.post, service.url + PV, json=data.patient_view(f"h4-{i}", fhir_server=drip))
                for i in range(8)]
        assert all(unavailable(f.result()) for f in slow)
        # The fetch threads were given back at the deadline: a call needing a fetch reaches its server again.
        response = http.post(service.url + PV, json=data.patient_view("h5", fhir_server=broken))
    assert response.status_code == 412 and "HTTP 500" in response.json()["issue"][0]["details"]["text"]
