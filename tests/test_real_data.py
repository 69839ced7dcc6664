"""Real-data suite: CDS Hooks calls whose FHIR data is shaped as real sources send it (the HL7 Physical Activity IG,
Synthea R4 patients, the FHIR R4 specification's examples), each with the answer a clinician should get. Every case
is answered three ways and must give its expected answer in each: in process by the one call path, over HTTP by
`pacing-cds serve`, and with no prefetch but the Goals against a real FHIR server (sekmet) holding the case's resources."""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import pytest

from cds.engine import Knowledge, RuleEngine
from cds.fhir.client import FhirClient
from cds.hooks.models import Card
from cds.services import services_of
from cds.services.pipeline import answer
from cds.services.proposed import first_proposed
from tests.conftest import ROOT, LiveService
from tests.support.examples import BASE_URL, Example
from tests.support.fhir_server import TOKEN, FhirServer
from tests.support.processes import free_port

SUITE = ROOT / "tests" / "real_data"
NOW = "2026-11-20T09:00:00Z"


@dataclass(frozen=True)
class Case(Example):
    """tests/real_data/<source>/<case>/: request.json (a patient-view call with every prefetch key) and
    expected.json (codes of the cards in order, optional dose, words the cards must and must not say)."""

    @property
    def name(self) -> str:
        return f"{self.folder.parent.name}/{self.folder.name}"

    def resources(self) -> list[dict[str, Any]]:
        """Every resource the request's prefetch holds, as a FHIR server would store them."""
        out = []
        for value in self.request["prefetch"].values():
            if value.get("resourceType") == "Bundle":
                out.extend(entry["resource"] for entry in value.get("entry", []))
            else:
                out.append(value)
        return out

    def without_prefetch(self, fhir_base: str) -> dict[str, Any]:
        """The same call with no prefetch but the Goals: the service must fetch everything else from fhir_base
        itself. The test FHIR server has no Goal search parameters (it answers Goal?patient=x with every Goal and
        a warning, which the service rightly takes as unreadable), so the Goals stay prefetched, as an EHR that
        prefetches some keys sends them."""
        body = copy.deepcopy(self.request)
        goals = body["prefetch"].get("step-goals")
        body["prefetch"] = {"step-goals": goals} if goals is not None else {}
        if not body["prefetch"]:
            del body["prefetch"]
        body["fhirServer"] = fhir_base
        body["fhirAuthorization"] = {"access_token": TOKEN, "token_type": "Bearer", "expires_in": 300,
                                     "scope": "user/*.read", "subject": "pacing-cds"}
        return body


CASES = [Case(p.parent) for p in sorted(SUITE.rglob("request.json"))]


def dose_of(cards: list[dict[str, Any]]) -> str | None:
    """The dose proposed by the first card that carries one (a ServiceRequest timing or a Goal target)."""
    return first_proposed(Card.model_validate(card) for card in cards)


def check(case: Case, response: dict[str, Any], how: str) -> None:
    expected = case.expected
    cards = response["cards"]
    codes = [card["source"]["topic"]["code"] for card in cards]
    assert codes == expected["codes"], f"{case.name} {how}: cards {codes}, expected {expected['codes']}: " \
                                       f"{expected['shows']}\n" + "\n---\n".join(c["detail"] for c in cards)
    if "dose" in expected:
        assert dose_of(cards) == expected["dose"], f"{case.name} {how}: dose"
    details = "\n".join(card["summary"] + "\n" + card["detail"] for card in cards)
    for words in expected.get("says", []):
        assert words in details, f"{case.name} {how}: no card says {words!r}\n{details}"
    for words in expected.get("never_says", []):
        assert words not in details, f"{case.name} {how}: a card says {words!r}\n{details}"
    for card in cards:
        Card.model_validate(card)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    """One `pacing-cds serve` for the whole suite, its clock set to the cases' moment."""
    workdir = tmp_path_factory.mktemp("real-data")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PACING_CDS_")}
    env.update({"PACING_CDS_PORT": str(port), "PACING_CDS_HOST": "127.0.0.1", "PACING_CDS_WORKERS": "2",
                "PACING_CDS_DATABASE_URL": f"sqlite:///{workdir / 'live.db'}", "PACING_CDS_NOW": NOW,
                "PACING_CDS_PUBLIC_BASE_URL": BASE_URL, "PYTHONUNBUFFERED": "1"})
    service = LiveService(workdir, env, port).start()
    yield service
    service.stop()


def test_the_suite_covers_each_source() -> None:
    assert {c.folder.parent.name for c in CASES} == {"pa-ig", "synthea", "fhir-r4"}
    for case in CASES:
        request = case.request
        assert "fhirServer" not in request, case.name
        assert set(case.expected) >= {"service", "now", "codes", "shows"}, case.name
        assert (case.folder / "README.md").read_text().strip(), case.name
        for resource in case.resources():
            subject = resource.get("subject", {}).get("reference")
            patient = request["context"]["patientId"]
            assert resource["resourceType"] == "Patient" or subject == f"Patient/{patient}", (case.name, resource)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_in_process(case: Case, engine: RuleEngine, knowledge: Knowledge) -> None:
    service = services_of(knowledge)[case.expected["service"]]
    now = datetime.fromisoformat(case.expected["now"].replace("Z", "+00:00"))
    fhir = FhirClient(3.0, 10)
    try:
        response = answer(service, case.request, engine, fhir, now, base_url=BASE_URL).outcome.response.to_json()
    finally:
        fhir.close()
    check(case, response, "in process")


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_over_http(case: Case, served: LiveService, http: httpx.Client) -> None:
    response = http.post(f"{served.url}/cds-services/{case.expected['service']}", json=case.request)
    assert response.status_code == 200, (case.name, response.text)
    check(case, response.json(), "over HTTP")


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_through_the_fhir_server(case: Case, served: LiveService, fhir_server: FhirServer,
                                 http: httpx.Client) -> None:
    fhir_server.load(case.resources())
    body = case.without_prefetch(fhir_server.base_url)
    response = http.post(f"{served.url}/cds-services/{case.expected['service']}", json=body)
    assert response.status_code == 200, (case.name, response.text)
    check(case, response.json(), "from the FHIR server")
