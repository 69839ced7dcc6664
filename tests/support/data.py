"""Small builders of FHIR resources and CDS Hooks requests for the tests."""

from __future__ import annotations

import copy
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

SPEC_EXAMPLES = Path(__file__).resolve().parents[1] / "spec_examples"
NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def spec_example(name: str) -> Any:
    """One of the CDS Hooks specification's own examples (copied into tests/spec_examples/)."""
    return json.loads((SPEC_EXAMPLES / name).read_text())


def patient(pid: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, "name": [{"family": "Testperson", "given": ["Ada"]}],
            "gender": "female", "birthDate": "1970-05-01"}


def observation(pid: str, oid: str, code: str, value: float, unit: str, when: datetime) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": oid, "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "subject": {"reference": f"Patient/{pid}"},
            "effectiveDateTime": when.isoformat().replace("+00:00", "Z"),
            "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}}


def daily_steps(pid: str, days: int, start: int = 0) -> list[dict[str, Any]]:
    return [observation(pid, f"{pid}-steps-{i}", "41950-7", 3000 + 10 * i, "/d", NOW - timedelta(days=i))
            for i in range(start, start + days)]


def pain_scores(pid: str, days: int) -> list[dict[str, Any]]:
    return [observation(pid, f"{pid}-pain-{i}", "72514-3", 4 + i % 2, "{score}", NOW - timedelta(days=i))
            for i in range(days)]


def condition(pid: str, cid: str, code: str = "82423001") -> dict[str, Any]:
    return {"resourceType": "Condition", "id": cid,
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                           "code": "active"}]},
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": code}]},
            "subject": {"reference": f"Patient/{pid}"}}


def exercise_order(pid: str, sid: str, status: str = "active", minutes: int = 20, per_week: int = 3
                   ) -> dict[str, Any]:
    return {"resourceType": "ServiceRequest", "id": sid, "status": status, "intent": "order",
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "229065009"}]},
            "subject": {"reference": f"Patient/{pid}"}, "authoredOn": "2026-10-01",
            "occurrenceTiming": {"repeat": {"frequency": per_week, "period": 1, "periodUnit": "wk",
                                            "duration": minutes, "durationUnit": "min"}}}


def searchset(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "searchset", "total": len(resources),
            "entry": [{"resource": r} for r in resources]}


def operation_outcome(severity: str = "error") -> dict[str, Any]:
    return {"resourceType": "OperationOutcome",
            "issue": [{"severity": severity, "code": "exception", "diagnostics": "query failed"}]}


def patient_view(pid: str, prefetch: dict[str, Any] | None = None, fhir_server: str | None = None,
                 token: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": "Practitioner/example", "patientId": pid},
    }
    if fhir_server:
        body["fhirServer"] = fhir_server
    if token:
        body["fhirAuthorization"] = {"access_token": token, "token_type": "Bearer", "expires_in": 300,
                                     "scope": "user/Patient.read user/Observation.read", "subject": "pacing-cds"}
    if prefetch is not None:
        body["prefetch"] = prefetch
    return body


def full_prefetch(pid: str) -> dict[str, Any]:
    """Every key of the pacing services' prefetch, answered."""
    return {
        "patient": patient(pid),
        "conditions": searchset([condition(pid, f"{pid}-c1")]),
        "pain": searchset(pain_scores(pid, 10)),
        "activity": searchset(daily_steps(pid, 10)),
        "vitals": searchset([]),
        "weight": searchset([]),
        "exercise-orders": searchset([exercise_order(pid, f"{pid}-sr1")]),
        "step-goals": searchset([]),
        "careplans": searchset([]),
    }


def order_request(hook: str, pid: str, minutes: int = 45) -> dict[str, Any]:
    """An order-select or order-sign call carrying one draft exercise order."""
    draft = exercise_order(pid, "draft-1", status="draft", minutes=minutes)
    context: dict[str, Any] = {"userId": "PractitionerRole/123", "patientId": pid,
                               "draftOrders": {"resourceType": "Bundle", "type": "collection",
                                               "entry": [{"resource": draft}]}}
    if hook == "order-select":
        context["selections"] = ["ServiceRequest/draft-1"]
    return {"hook": hook, "hookInstance": str(uuid.uuid4()), "context": context, "prefetch": full_prefetch(pid)}


def with_change(body: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A deep copy of body with the dotted path set to value (or removed when value is ...)."""
    out = copy.deepcopy(body)
    *parents, last = path.split(".")
    node = out
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if value is ...:
        del node[last]
    else:
        node[last] = value
    return out
