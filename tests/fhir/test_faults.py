"""FHIR server faults, produced by real server processes on 127.0.0.1: each ends in 412, or in a correct but
degraded answer within the request deadline; past the deadline the call answers a card saying that guidance (red
flags included) is unavailable, and the audit says why."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

from cds.store.database import Store
from tests.conftest import LiveService
from tests.support import data

Start = Callable[..., LiveService]


def audit_of(service: LiveService, hook_instance: str) -> dict[str, object]:
    store = Store(service.env["PACING_CDS_DATABASE_URL"])
    try:
        [event] = store.audit_events(hook_instance)
        return event
    finally:
        store.close()


@pytest.mark.parametrize(("mode", "reason"), [
    ("500", "FHIR server answered HTTP 500"),
    ("html", "a body that is not JSON"),
    ("json-array", "JSON that is not a FHIR resource"),
    ("redirect", "FHIR server answered HTTP 302"),
])
def test_broken_answers_are_412_naming_the_keys(live_service: Start, fault_server: Callable[[str], str],
                                                http: httpx.Client, mode: str, reason: str) -> None:
    service = live_service()
    body = data.patient_view("f1", fhir_server=fault_server(mode), token="t0ken-value")
    response = http.post(f"{service.url}/cds-services/pacing-review", json=body)
    assert response.status_code == 412
    text = response.json()["issue"][0]["details"]["text"]
    assert reason in text and "patient" in text and "t0ken-value" not in text
    assert audit_of(service, body["hookInstance"])["status"] == 412


def test_a_server_too_slow_for_the_deadline_gets_an_unavailable_card_in_time(live_service: Start,
                                                                  fault_server: Callable[[str], str],
                                                                  http: httpx.Client) -> None:
    service = live_service(request_deadline_s="1.5", fhir_timeout_s="3")
    body = data.patient_view("f2", fhir_server=fault_server("slow-pages"))
    started = time.monotonic()
    response = http.post(f"{service.url}/cds-services/pacing-review", json=body)
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    [card] = response.json()["cards"]
    assert card["indicator"] == "warning" and "red flags not checked" in card["summary"]
    assert card["source"]["topic"]["code"] == "data-unavailable"
    # The slow server needs 5 s (10 pages, 0.5 s each): the margin is for a loaded machine, not for the server.
    assert elapsed < 1.5 + 2.5, "answered at the deadline, not after the slow server"
    event = audit_of(service, body["hookInstance"])
    assert event["status"] == 200 and "deadline of 1.5 s passed" in str(event["message"])
    assert event["card_topics"] == ["data-unavailable"]
    assert http.get(f"{service.url}/healthz").status_code == 200


def test_the_client_gives_up_at_the_deadline_naming_what_is_pending(fault_server: Callable[[str], str]) -> None:
    from cds.fhir.client import DeadlineExceeded, FhirClient

    client = FhirClient(timeout_s=3.0, max_pages=50)
    url = fault_server("slow-pages")
    started = time.monotonic()
    try:
        with pytest.raises(DeadlineExceeded, match="activity, pain"):
            client.fetch_all(url, None, {"activity": ("Observation?patient=x", None),
                                         "pain": ("Observation?patient=y", None)}, deadline=started + 1.2)
    finally:
        client.close()
    assert time.monotonic() - started < 1.2 + 2.5  # the pages alone would take 5 s


def test_a_read_that_stopped_at_the_deadline_before_the_wait_is_still_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """The race a loaded machine produces: one read stops at the deadline just before the call's wait on it times
    out, so it is done, but it is no less late than the read still running. Timing cannot be forced with a real
    server, so the two reads are stand-ins."""
    from cds.fhir.client import DeadlineExceeded, FhirClient, StoppedAtDeadline

    client = FhirClient(timeout_s=3.0, max_pages=5)

    def fetch(server: str, token: str | None, url: str, *rest: object) -> object:
        if "activity" in url:
            raise StoppedAtDeadline("stopped at the request deadline")
        time.sleep(1.0)
        raise StoppedAtDeadline("stopped at the request deadline")

    monkeypatch.setattr(client, "_fetch", fetch)
    try:
        with pytest.raises(DeadlineExceeded) as raised:
            client.fetch_all("http://127.0.0.1:9", None, {"activity": ("Observation?activity", None),
                                                          "pain": ("Observation?pain", None)},
                             deadline=time.monotonic() + 0.3)
    finally:
        client.close()
    assert str(raised.value) == "activity, pain"
