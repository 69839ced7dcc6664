"""CDS Hooks 2.0 service requirements, checked against the spec's own examples (see docs/conformance.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.support import data

SHARED_EXAMPLES = Path(__file__).resolve().parents[2] / "shared" / "reference" / "cds-hooks-examples"
COPIES = {
    "discovery.json": "HL7_cds-hooks__index__01.json",
    "request-patient-view.json": "HL7_cds-hooks__index__02.json",
    "response-system-action.json": "HL7_cds-hooks__index__16.json",
    "response.json": "HL7_cds-hooks__index__17.json",
    "feedback-accepted.json": "HL7_cds-hooks__index__19.json",
    "feedback-overridden.json": "HL7_cds-hooks__index__20.json",
    "feedback-overridden-reason.json": "HL7_cds-hooks__index__21.json",
    "context-patient-view.json": "HL7_cds-hooks-library__patient-view__01.json",
    "context-order-select.json": "HL7_cds-hooks-library__order-select__01.json",
    "context-order-sign.json": "HL7_cds-hooks-library__order-sign__01.json",
}


def empties(value: Any, path: str = "$") -> list[str]:
    """Paths of every null, empty string, empty array or empty object (req 3)."""
    found = []
    if value is None or value == "" or value == [] or value == {}:
        found.append(path)
    if isinstance(value, dict):
        for key, item in value.items():
            found += empties(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += empties(item, f"{path}[{index}]")
    return found


@pytest.mark.parametrize(("copy", "original"), COPIES.items())
def test_example_copies_equal_the_specification(copy: str, original: str) -> None:
    source = SHARED_EXAMPLES / original
    if not source.exists():
        pytest.skip(f"shared/reference is not beside this clone ({source})")
    assert data.spec_example(copy) == json.loads(source.read_text())


def test_discovery_has_the_spec_shape_and_no_empty_values(client: FlaskClient) -> None:
    """Reqs 3-12, 36: GET {base}/cds-services lists services with hook, title, description, id, prefetch."""
    body = client.get("/cds-services").get_json()
    example = data.spec_example("discovery.json")
    assert set(body) == set(example) == {"services"}
    for service in body["services"]:
        assert isinstance(service["hook"], str) and isinstance(service["description"], str)
        assert isinstance(service["id"], str) and isinstance(service["title"], str)
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in service["prefetch"].items())
    assert empties(body) == []


def test_every_discovered_service_answers_at_its_endpoint(client: FlaskClient) -> None:
    """Req 16, 74, 77: POST {base}/cds-services/{id} answers 200 with a cards array."""
    for service in client.get("/cds-services").get_json()["services"]:
        hook = service["hook"]
        body = data.patient_view("c1", data.full_prefetch("c1")) if hook == "patient-view" \
            else data.order_request(hook, "c1")
        response = client.post(f"/cds-services/{service['id']}", json=body)
        assert response.status_code == 200
        answer = response.get_json()
        assert set(answer) == {"cards"}
        assert empties(answer) == ([] if answer["cards"] else ["$.cards"])  # the one empty the spec allows


def test_spec_request_with_the_library_contexts(client: FlaskClient) -> None:
    """The hook library's own contexts are accepted by the matching service (prefetch supplied)."""
    for hook, name, path in (("order-select", "context-order-select.json", "exercise-order-select"),
                             ("order-sign", "context-order-sign.json", "exercise-order-sign"),
                             ("patient-view", "context-patient-view.json", "pacing-review")):
        body = {"hook": hook, "hookInstance": f"spec-{hook}", "context": data.spec_example(name)["context"],
                "prefetch": data.full_prefetch("1288992")}
        response = client.post(f"/cds-services/{path}", json=body)
        assert response.status_code == 200, response.get_data(as_text=True)
