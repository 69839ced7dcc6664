"""Prefetch semantics against a real FHIR server (sekmet-fhir on 127.0.0.1, bearer token required)."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cds.errors import CdsError
from cds.fhir.client import FhirClient
from cds.fhir.resolver import PrefetchData, resolve
from cds.hooks.models import CdsRequest
from cds.knowledge import load_knowledge
from cds.services import services_of
from tests.support import data
from tests.support.fhir_server import TOKEN, FhirServer
from tests.support.processes import free_port

SERVICE = services_of(load_knowledge(Path(__file__).resolve().parents[2] / "rules"))["pacing-review"]
TEMPLATES = SERVICE.templates


@pytest.fixture
def client() -> Iterator[FhirClient]:
    fhir = FhirClient(timeout_s=5.0, max_pages=10)
    yield fhir
    fhir.close()


# The paging tests read 450 Observations over several pages: what they check is the paging, not the deadline, so
# they give the server as long as a loaded 2-core machine may need (the deadline has tests of its own).
PAGING_TIMEOUT_S = 30.0


@pytest.fixture
def paging_client() -> Iterator[FhirClient]:
    fhir = FhirClient(timeout_s=PAGING_TIMEOUT_S, max_pages=10)
    yield fhir
    fhir.close()


def new_patient(server: FhirServer, steps: int = 12, pain: int = 8) -> str:
    pid = f"pf-{uuid.uuid4().hex[:10]}"
    server.load([data.patient(pid), data.condition(pid, f"{pid}-c1"), *data.daily_steps(pid, steps),
                 *data.pain_scores(pid, pain), data.exercise_order(pid, f"{pid}-sr1")])
    return pid


def run(pid: str, fhir: FhirClient, prefetch: dict[str, Any] | None = None, server: str | None = None,
        token: str | None = TOKEN) -> PrefetchData:
    body = data.patient_view(pid, prefetch=prefetch, fhir_server=server, token=token if server else None)
    return resolve(TEMPLATES, CdsRequest.model_validate(body), pid, fhir, SERVICE.optional_keys)


def closed_port_url() -> str:
    return f"http://127.0.0.1:{free_port()}/fhir"


def test_complete_prefetch_needs_no_fhir_server(client: FhirClient) -> None:
    pid = "pf-prefetched"
    result = run(pid, client, prefetch=data.full_prefetch(pid), server=closed_port_url())
    assert set(result.sources.values()) == {"prefetch"}
    assert len(result.entries("activity")) == 10


def test_absent_keys_are_fetched_with_the_bearer_token(fhir_server: FhirServer, client: FhirClient) -> None:
    pid = new_patient(fhir_server, steps=12, pain=8)
    result = run(pid, client, server=fhir_server.base_url)
    assert {k: v for k, v in result.sources.items() if k != "step-goals"} == {
        k: "fhirServer" for k in ("patient", "conditions", "pain", "activity", "vitals", "weight", "exercise-orders",
                                  "careplans")}
    assert result.entries("patient")[0]["id"] == pid
    assert len(result.entries("activity")) == 12
    assert len(result.entries("pain")) == 8
    assert len(result.entries("conditions")) == 1
    assert len(result.entries("exercise-orders")) == 1
    dates = [o["effectiveDateTime"] for o in result.entries("activity")]
    assert dates == sorted(dates, reverse=True), "newest first"


def test_only_the_absent_keys_are_fetched(fhir_server: FhirServer, client: FhirClient) -> None:
    pid = new_patient(fhir_server, steps=12)
    prefetch = data.full_prefetch(pid)
    del prefetch["activity"]
    result = run(pid, client, prefetch=prefetch, server=fhir_server.base_url)
    assert result.sources["activity"] == "fhirServer"
    assert len(result.entries("activity")) == 12
    assert result.sources["pain"] == "prefetch"
    assert len(result.entries("pain")) == 10


def test_null_means_no_data_and_is_not_queried(client: FhirClient) -> None:
    pid = "pf-null"
    prefetch = {**data.full_prefetch(pid), "pain": None, "exercise-orders": None}
    result = run(pid, client, prefetch=prefetch, server=closed_port_url())
    assert result.resources["pain"] is None
    assert result.entries("pain") == []
    assert result.sources["pain"].startswith("prefetch (null")


@pytest.mark.parametrize("outcome", [
    data.operation_outcome("error"),
    data.searchset([data.operation_outcome("warning")]),
    {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": data.operation_outcome("fatal"),
                                                               "search": {"mode": "outcome"}}]},
])
def test_operation_outcome_counts_as_not_fulfilled(fhir_server: FhirServer, client: FhirClient,
                                                   outcome: dict[str, Any]) -> None:
    pid = new_patient(fhir_server, pain=8)
    result = run(pid, client, prefetch={**data.full_prefetch(pid), "pain": outcome}, server=fhir_server.base_url)
    assert result.sources["pain"] == "fhirServer"
    assert len(result.entries("pain")) == 8
    assert result.notes["pain"] == ["prefetch held an OperationOutcome"]


def test_informational_outcome_in_a_bundle_is_kept(client: FhirClient) -> None:
    pid = "pf-info"
    pain = data.searchset(data.pain_scores(pid, 3))
    pain["entry"].append({"resource": data.operation_outcome("information"), "search": {"mode": "outcome"}})
    result = run(pid, client, prefetch={**data.full_prefetch(pid), "pain": pain}, server=closed_port_url())
    assert result.sources["pain"] == "prefetch"
    assert len(result.entries("pain")) == 3


def test_operation_outcome_without_fhir_server_is_412_naming_the_key(client: FhirClient) -> None:
    pid = "pf-oo"
    with pytest.raises(CdsError) as raised:
        run(pid, client, prefetch={**data.full_prefetch(pid), "vitals": data.operation_outcome()})
    assert raised.value.status == 412
    assert "vitals" in raised.value.message and "no fhirServer" in raised.value.message
    assert raised.value.expression == ["prefetch.vitals"]


def test_missing_keys_without_fhir_server_are_412_listing_missing_and_present(client: FhirClient) -> None:
    pid = "pf-missing"
    prefetch = data.full_prefetch(pid)
    del prefetch["weight"], prefetch["conditions"]
    with pytest.raises(CdsError) as raised:
        run(pid, client, prefetch=prefetch)
    assert raised.value.status == 412
    assert "conditions, weight" in raised.value.message
    assert "prefetch keys present: activity, careplans, exercise-orders, pain, patient, step-goals, vitals" in \
        raised.value.message


def test_unreachable_fhir_server_is_412(client: FhirClient) -> None:
    with pytest.raises(CdsError) as raised:
        run("pf-down", client, server=closed_port_url())
    assert raised.value.status == 412
    assert "unreachable" in raised.value.message
    optional = {"prefetch.step-goals", "prefetch.careplans"}
    assert set(raised.value.expression) == {f"prefetch.{t.key}" for t in TEMPLATES} - optional


def test_an_optional_key_the_server_cannot_answer_is_evaluated_as_no_data(fhir_server: FhirServer,
                                                                         client: FhirClient) -> None:
    """The test FHIR server has no Goal search parameters and says so in a warning OperationOutcome."""
    pid = new_patient(fhir_server)
    result = run(pid, client, server=fhir_server.base_url)
    assert result.resources["step-goals"] is None
    assert result.sources["step-goals"] == "unobtainable (optional)"
    assert result.notes["step-goals"] == ["FHIR server answered with an OperationOutcome"]


def test_an_optional_key_left_out_without_fhir_server_is_none_recorded(client: FhirClient) -> None:
    """Never asked for is not a failed request: none recorded, not "could not be read"."""
    prefetch = data.full_prefetch("pf-nogoal")
    del prefetch["step-goals"]
    result = run("pf-nogoal", client, prefetch=prefetch)
    assert result.sources["step-goals"].startswith("none recorded")


def test_an_optional_key_prefetched_as_an_operation_outcome_could_not_be_read(client: FhirClient) -> None:
    prefetch = data.full_prefetch("pf-goal-error")
    prefetch["step-goals"] = {"resourceType": "OperationOutcome",
                              "issue": [{"severity": "error", "code": "exception"}]}
    result = run("pf-goal-error", client, prefetch=prefetch)
    assert result.sources["step-goals"] == "unobtainable (optional)"
    assert "prefetch held an OperationOutcome" in result.notes["step-goals"]


def test_wrong_token_is_412_and_the_token_is_not_in_the_message(fhir_server: FhirServer,
                                                                 client: FhirClient) -> None:
    pid = new_patient(fhir_server)
    with pytest.raises(CdsError) as raised:
        run(pid, client, server=fhir_server.base_url, token="wrong-token-value-123")
    assert raised.value.status == 412
    assert "HTTP 401" in raised.value.message
    assert "wrong-token-value-123" not in raised.value.message


def test_unknown_patient_is_412(fhir_server: FhirServer, client: FhirClient) -> None:
    with pytest.raises(CdsError) as raised:
        run("pf-nobody", client, server=fhir_server.base_url)
    assert raised.value.status == 412
    assert "patient: FHIR server answered HTTP 404" in raised.value.message


def test_silent_fhir_server_times_out_into_412() -> None:
    with socket.socket() as listener:  # accepts connections into its backlog, never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/fhir"
        fhir = FhirClient(timeout_s=0.5, max_pages=10)
        try:
            with pytest.raises(CdsError) as raised:
                run("pf-silent", fhir, server=url)
        finally:
            fhir.close()
    assert raised.value.status == 412
    assert "no answer within 0.5 s" in raised.value.message


def test_pages_are_followed_up_to_the_bound(fhir_server: FhirServer, paging_client: FhirClient) -> None:
    pid = new_patient(fhir_server, steps=450)  # the activity template asks for 200 a page
    assert len(run(pid, paging_client, server=fhir_server.base_url).entries("activity")) == 450
    bounded = FhirClient(timeout_s=PAGING_TIMEOUT_S, max_pages=2)
    try:
        result = run(pid, bounded, server=fhir_server.base_url)
    finally:
        bounded.close()
    assert len(result.entries("activity")) == 400
    assert result.notes["activity"] == ["stopped after 2 pages"]
    dates = [o["effectiveDateTime"] for o in result.entries("activity")]
    assert dates == sorted(dates, reverse=True), "the newest pages are the ones kept"


def test_paginated_prefetch_is_completed_from_the_fhir_server(fhir_server: FhirServer,
                                                               paging_client: FhirClient) -> None:
    pid = new_patient(fhir_server, steps=450)
    first_page = fhir_server.http.get(TEMPLATES[3].render({"patientId": pid})).json()
    assert TEMPLATES[3].key == "activity" and len(first_page["entry"]) == 200
    result = run(pid, paging_client, prefetch={**data.full_prefetch(pid), "activity": first_page},
                 server=fhir_server.base_url)
    assert result.sources["activity"] == "prefetch + fhirServer pages"
    assert len(result.entries("activity")) == 450
    assert len({o["id"] for o in result.entries("activity")}) == 450


def test_next_link_to_another_host_is_not_followed(client: FhirClient) -> None:
    pid = "pf-elsewhere"
    activity = data.searchset(data.daily_steps(pid, 5))
    activity["link"] = [{"relation": "next", "url": "http://127.0.0.2:9/fhir/Observation?page=2"}]
    result = run(pid, client, prefetch={**data.full_prefetch(pid), "activity": activity},
                 server=closed_port_url())
    assert len(result.entries("activity")) == 5
    assert result.notes["activity"] == ["next link points outside fhirServer; not followed"]


@pytest.mark.parametrize(("key", "value", "message"), [
    ("patient", data.searchset([]), "prefetch.patient is a Bundle, expected a Patient"),
    ("patient", data.patient("someone-else"), "prefetch.patient is a different Patient"),
    ("pain", data.patient("pf-bad"), "prefetch.pain is a Patient, expected a Bundle of Observation"),
    ("pain", data.searchset([data.condition("pf-bad", "c9")]), "entry[0] is a Condition, expected Observation"),
    ("activity", data.searchset(data.daily_steps("another-patient", 2)), "entry[0] belongs to another patient"),
    ("conditions", "Condition/1", "prefetch.conditions must be a FHIR resource or null"),
    ("vitals", [], "prefetch.vitals must be a FHIR resource or null"),
])
def test_prefetch_that_cannot_answer_its_template_is_400(client: FhirClient, key: str, value: Any,
                                                         message: str) -> None:
    pid = "pf-bad"
    with pytest.raises(CdsError) as raised:
        run(pid, client, prefetch={**data.full_prefetch(pid), key: value})
    assert raised.value.status == 400
    assert message in raised.value.message
    assert raised.value.expression == [f"prefetch.{key}"]


def test_entries_read_while_checking_are_those_of_the_bundle_as_it_is(client: FhirClient) -> None:
    pid = "pf-read-once"
    prefetch = data.full_prefetch(pid)
    scores = len(prefetch["pain"]["entry"])
    prefetch["pain"]["entry"].append({"resource": {"resourceType": "OperationOutcome",
                                                   "issue": [{"severity": "information"}]}})
    result = run(pid, client, prefetch=prefetch, server=closed_port_url())
    assert {"pain", "activity"} <= set(result.read)
    recomputed = PrefetchData(result.resources, result.sources, result.notes)
    for key in result.resources:
        assert result.entries(key) == recomputed.entries(key), key
    assert [r["resourceType"] for r in result.entries("pain")] == ["Observation"] * scores
    result.entries("pain").clear()  # a caller's list is its own
    assert len(result.entries("pain")) == scores
    result.resources["pain"] = {"resourceType": "Bundle", "entry": []}  # replaced (as by fetched pages)
    assert result.entries("pain") == []
