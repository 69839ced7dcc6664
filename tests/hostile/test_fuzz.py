"""Property-based fuzzing (hypothesis): no request body, however strange, makes the service fail."""

from __future__ import annotations

import json
from typing import Any

from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support import data

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(10**20), max_value=10**20)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=30,
)
FHIR_VALUE = st.one_of(st.none(), st.integers(-10**6, 10**6), st.floats(allow_nan=False, allow_infinity=False),
                       st.text(max_size=12), st.sampled_from(["min", "h", "/d", "{score}", "Cel", "[degF]", "kg",
                                                              "[lb_av]", "mm[Hg]", "final", "amended", "2026-11-19",
                                                              "2026-11-19T10:00:00", "2026-11-19T10:00:00Z"]))
CODES = st.sampled_from(["72514-3", "91147-9", "91148-7", "41950-7", "55423-8", "55411-3", "82290-8", "85354-9",
                         "8480-6", "8462-4", "8310-5", "29463-7", "1234-5"])
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(body=JSON)
def test_any_json_body_gets_an_answer_not_a_failure(client: FlaskClient, body: Any) -> None:
    for path in ("/cds-services/pacing-review", "/cds-services/exercise-order-sign/feedback"):
        response = client.post(path, data=json.dumps(body), content_type="application/json")
        assert response.status_code in (200, 400, 412), response.get_data(as_text=True)[:300]
        if response.status_code != 200:
            assert response.get_json()["resourceType"] == "OperationOutcome"


@FUZZ
@given(changes=st.dictionaries(st.sampled_from(["hook", "hookInstance", "fhirServer", "context", "prefetch",
                                                "fhirAuthorization", "extension"]), JSON, max_size=3))
def test_mangled_fields_of_a_valid_request(client: FlaskClient, changes: dict[str, Any]) -> None:
    body = {**data.patient_view("p1", data.full_prefetch("p1")), **changes}
    response = client.post("/cds-services/pacing-review", data=json.dumps(body), content_type="application/json")
    assert response.status_code in (200, 400, 412)


@st.composite
def observation(draw: st.DrawFn) -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": "Observation", "id": draw(st.from_regex(r"[a-z0-9]{1,8}",
                                                                                        fullmatch=True)),
                                "subject": {"reference": "Patient/p1"},
                                "code": {"coding": [{"system": "http://loinc.org", "code": draw(CODES)}]}}
    for name in ("status", "effectiveDateTime"):
        if draw(st.booleans()):
            resource[name] = draw(FHIR_VALUE)
    if draw(st.booleans()):
        resource["valueQuantity"] = {"value": draw(FHIR_VALUE), "code": draw(FHIR_VALUE), "unit": draw(FHIR_VALUE)}
    if draw(st.booleans()):
        resource["component"] = draw(st.lists(st.fixed_dictionaries({
            "code": st.fixed_dictionaries({"coding": st.just([{"system": "http://loinc.org", "code": "8480-6"}])}),
            "valueQuantity": st.fixed_dictionaries({"value": FHIR_VALUE, "code": FHIR_VALUE})}), max_size=3))
    if draw(st.booleans()):
        resource["effectivePeriod"] = {"start": draw(FHIR_VALUE), "end": draw(FHIR_VALUE)}
    return resource


@FUZZ
@given(observations=st.lists(observation(), max_size=25), order_timing=JSON)
def test_strange_clinical_data_is_skipped_not_fatal(client: FlaskClient, observations: list[dict[str, Any]],
                                                    order_timing: Any) -> None:
    prefetch = data.full_prefetch("p1")
    prefetch["pain"] = data.searchset([o for o in observations if o["code"]["coding"][0]["code"] in
                                       ("72514-3", "91147-9", "91148-7")])
    prefetch["activity"] = data.searchset([o for o in observations if o not in prefetch["pain"]["entry"]])
    order = data.exercise_order("p1", "sr1")
    order["occurrenceTiming"] = {"repeat": order_timing}
    prefetch["exercise-orders"] = data.searchset([order])
    response = client.post("/cds-services/pacing-review", json=data.patient_view("p1", prefetch))
    assert response.status_code in (200, 400), response.get_data(as_text=True)[:500]
