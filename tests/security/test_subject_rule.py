"""One subject rule: every prefetched resource and every draft order must resolve to the context patient,
whatever the reference's spelling; anything else is refused with 400 naming the key."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.support import data

PV = "/cds-services/pacing-review"
SIGN = "/cds-services/exercise-order-sign"
SERVER = "https://ehr.example.org/fhir"


def activity_with(subject: Any, extra_entries: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    body = data.patient_view("B", data.full_prefetch("B"), fhir_server=SERVER)
    steps = data.daily_steps("B", 3)
    if subject is ...:
        del steps[0]["subject"]
    else:
        steps[0]["subject"] = subject
    bundle = data.searchset(steps)
    bundle["entry"].extend(extra_entries or [])
    body["prefetch"]["activity"] = bundle
    return body


@pytest.mark.parametrize(("subject", "why"), [
    ({"reference": "Patient/A"}, "another patient"),
    ({"reference": "Patient/A/_history/1"}, "another patient"),
    ({"reference": "patient/B"}, "not a reference to context.patientId"),
    ({"reference": "Group/B"}, "not a reference to context.patientId"),
    ({"reference": "https://other.example.org/fhir/Patient/B"}, "not a reference to context.patientId"),
    ({"reference": "urn:uuid:5c4e0e3e-0000-4000-8000-000000000001"}, "not a reference to context.patientId"),
    ({"identifier": {"system": "urn:mrn", "value": "B"}}, "without a literal Patient reference"),
    ({"reference": {"nested": "Patient/B"}}, "without a literal Patient reference"),
    (..., "has no subject"),
])
def test_a_resource_not_of_the_context_patient_is_400_naming_the_key(client: FlaskClient, subject: Any,
                                                                     why: str) -> None:
    response = client.post(PV, json=activity_with(subject))
    assert response.status_code == 400, response.get_data(as_text=True)
    issue = response.get_json()["issue"][0]
    assert "prefetch.activity" in issue["details"]["text"] and why in issue["details"]["text"]
    assert issue["expression"] == ["prefetch.activity"]


@pytest.mark.parametrize("subject", [
    {"reference": "Patient/B"},
    {"reference": "Patient/B/_history/7"},
    {"reference": f"{SERVER}/Patient/B"},
    {"reference": "urn:uuid:5c4e0e3e-0000-4000-8000-00000000000b", "display": "in the Bundle"},
])
def test_every_spelling_of_the_context_patient_is_accepted(client: FlaskClient, subject: dict[str, Any]) -> None:
    patient_entry = {"fullUrl": "urn:uuid:5c4e0e3e-0000-4000-8000-00000000000b", "resource": data.patient("B")}
    response = client.post(PV, json=activity_with(subject, [patient_entry]))
    assert response.status_code == 200, response.get_data(as_text=True)


def test_a_urn_naming_another_patient_in_the_bundle_is_refused(client: FlaskClient) -> None:
    other = {"fullUrl": "urn:uuid:5c4e0e3e-0000-4000-8000-00000000000a", "resource": data.patient("A")}
    body = activity_with({"reference": "urn:uuid:5c4e0e3e-0000-4000-8000-00000000000a"}, [other])
    assert client.post(PV, json=body).status_code == 400


@pytest.mark.parametrize("subject", [{"reference": "Patient/A"}, {"reference": "Patient/A/_history/2"}, ...])
def test_a_draft_order_of_another_patient_is_refused(client: FlaskClient, subject: Any) -> None:
    body = data.order_request("order-sign", "B")
    draft = body["context"]["draftOrders"]["entry"][0]["resource"]
    if subject is ...:
        del draft["subject"]
    else:
        draft["subject"] = subject
    response = client.post(SIGN, json=body)
    assert response.status_code == 400
    assert response.get_json()["issue"][0]["expression"] == ["context.draftOrders"]


def test_a_patient_read_must_be_the_context_patient(client: FlaskClient) -> None:
    body = data.patient_view("B", data.full_prefetch("B"))
    del body["prefetch"]["patient"]["id"]
    response = client.post(PV, json=body)
    assert response.status_code == 400 and "prefetch.patient" in response.get_data(as_text=True)
