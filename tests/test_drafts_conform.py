"""Every FHIR resource a card drafts (created ServiceRequests and Goals, an order hook's draft updated to the paced
dose) meets what the HL7 Physical Activity IG profiles it claims require, as tests/data/pa_ig_profiles.yaml states
it from the IG's own profile definitions; and the checker catches a draft that does not."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from fhir.resources.R4B.goal import Goal
from fhir.resources.R4B.servicerequest import ServiceRequest

from cds.engine import Knowledge, RuleEngine
from cds.services.pipeline import evaluate_patient
from tests.support.examples import EXAMPLES, example, run_example
from tests.support.pa_profiles import problems, profile_facts, profiles

SERVICE_REQUEST = profile_facts()["profiles"]["pa-servicerequest"]
GOAL = profile_facts()["profiles"]["pa-goal"]
PROFILE_OF = {"ServiceRequest": SERVICE_REQUEST["url"], "Goal": GOAL["url"]}
MODELS = {"ServiceRequest": ServiceRequest, "Goal": Goal}


@dataclass(frozen=True)
class Drafted:
    """One resource a suggestion carries, with the example and the action that carry it."""

    example: str
    action: str
    resource: dict[str, Any]

    @property
    def name(self) -> str:
        return f"{self.example}: {self.action} {self.resource['resourceType']}/{self.resource.get('id')}"


def drafted(cards: list[dict[str, Any]], example_name: str) -> list[Drafted]:
    return [Drafted(example_name, action["type"], action["resource"]) for card in cards
            for suggestion in card.get("suggestions", []) for action in suggestion["actions"] if "resource" in action]


@pytest.fixture(scope="module")
def drafts(engine: RuleEngine) -> list[Drafted]:
    """Every resource drafted in every example's answer."""
    return [d for e in EXAMPLES for d in drafted(run_example(e.name, engine).response.to_json()["cards"], e.name)]


def _now(example_name: str) -> datetime:
    return datetime.fromisoformat(example(example_name)[1]["now"].replace("Z", "+00:00"))


def _prefetched(example_name: str) -> set[str]:
    body = example(example_name)[0]
    bundles = [b for b in body.get("prefetch", {}).values() if b and b.get("resourceType") == "Bundle"]
    return {f"{e['resource']['resourceType']}/{e['resource']['id']}" for b in bundles for e in b.get("entry", [])}


def test_the_examples_draft_every_kind_and_each_claims_its_pa_profile(drafts: list[Drafted]) -> None:
    kinds = {(d.action, d.resource["resourceType"]) for d in drafts}
    assert kinds >= {("create", "ServiceRequest"), ("update", "ServiceRequest"), ("create", "Goal")}
    unclaimed = [d.name for d in drafts if PROFILE_OF[d.resource["resourceType"]] not in
                 d.resource.get("meta", {}).get("profile", [])]
    assert unclaimed == []


def test_every_draft_meets_the_ig_profile_facts(drafts: list[Drafted]) -> None:
    by_url = profiles()
    found = {d.name: problems(d.resource, by_url[PROFILE_OF[d.resource["resourceType"]]]) for d in drafts}
    assert {name: p for name, p in found.items() if p} == {}


def test_every_draft_is_a_valid_fhir_resource(drafts: list[Drafted]) -> None:
    for d in drafts:
        model = MODELS[d.resource["resourceType"]].model_validate(d.resource)
        assert model.model_dump(mode="json", exclude_none=True) == d.resource, d.name


def test_created_requests_are_authored_at_the_evaluation_by_the_user(drafts: list[Drafted]) -> None:
    created = [d for d in drafts if d.action == "create" and d.resource["resourceType"] == "ServiceRequest"]
    for d in created:
        assert datetime.fromisoformat(d.resource["authoredOn"]) == _now(d.example), d.name
        assert d.resource["requester"] == {"reference": example(d.example)[0]["context"]["userId"]}, d.name


def test_an_updated_draft_keeps_its_own_authoring_and_reasons(drafts: list[Drafted]) -> None:
    for d in (d for d in drafts if d.action == "update"):
        [original] = [e["resource"] for e in example(d.example)[0]["context"]["draftOrders"]["entry"]
                      if e["resource"]["id"] == d.resource["id"]]
        for kept in ("authoredOn", "reasonReference", "reasonCode", "subject", "code", "status", "intent"):
            assert d.resource.get(kept) == original.get(kept), (d.name, kept)


def test_drafted_reasons_point_at_the_patients_own_records(drafts: list[Drafted]) -> None:
    for d in (d for d in drafts if d.resource["resourceType"] == "ServiceRequest"):
        references = {r["reference"] for r in d.resource.get("reasonReference", [])}
        assert references and references <= _prefetched(d.example), d.name


def test_goals_are_due_goal_due_days_after_the_evaluation(drafts: list[Drafted], knowledge: Knowledge) -> None:
    days = timedelta(days=knowledge.values["goal_due_days"])
    goals = [d for d in drafts if d.resource["resourceType"] == "Goal"]
    for d in goals:
        assert [date.fromisoformat(t["dueDate"]) for t in d.resource["target"]] == [_now(d.example).date() + days]
        missing = [f"target.{path}" for path in GOAL["must_support_target"]
                   for target in d.resource["target"] if not any(k.startswith(path.removesuffix("[x]")) for k in target)]
        assert missing == [], d.name


def test_without_a_chronic_pain_condition_a_request_gives_the_coded_reason(engine: RuleEngine,
                                                                           knowledge: Knowledge) -> None:
    def drop_conditions(body: dict[str, Any]) -> None:
        """No Condition at all: the patient is eligible by the exercise order's coded reason (low back pain)."""
        body["prefetch"]["conditions"]["entry"] = []
        for entry in body["prefetch"]["exercise-orders"]["entry"]:
            entry["resource"]["reasonCode"] = [{"coding": [{"system": "http://snomed.info/sct", "code": "279039007"}]}]

    cards = run_example("data-gap", engine, drop_conditions).response.to_json()["cards"]
    [assessment] = [d for d in drafted(cards, "data-gap") if d.resource["resourceType"] == "ServiceRequest"]
    codes = knowledge.codes
    assert "reasonReference" not in assessment.resource
    assert assessment.resource["reasonCode"] == [{"coding": [codes.coding(codes.draft_reason)]}]
    assert problems(assessment.resource, SERVICE_REQUEST) == []


@pytest.mark.parametrize("user", ["Patient/patient-1", "RelatedPerson/carer-1"])
def test_a_user_the_profile_allows_no_request_from_is_not_made_requester(engine: RuleEngine, user: str) -> None:
    cards = run_example("progress-walking", engine,
                        lambda body: body["context"].update(userId=user)).response.to_json()["cards"]
    [order] = [d.resource for d in drafted(cards, "progress-walking")]
    assert "requester" not in order
    assert problems(order, SERVICE_REQUEST) == [".: requester is required (min 1)"]


def test_the_worklist_drafts_without_a_user_leave_requester_out(engine: RuleEngine) -> None:
    body, expected = example("progress-walking")
    resources = [e["resource"] for b in body["prefetch"].values() if b and b.get("resourceType") == "Bundle"
                 for e in b.get("entry", [])] + [body["prefetch"]["patient"]]
    outcome = evaluate_patient(engine, expected["service"], body["hook"], "worklist", body["context"]["patientId"],
                               resources, _now("progress-walking"))
    [order] = [d.resource for d in drafted(outcome.response.to_json()["cards"], "progress-walking")]
    assert "requester" not in order and order["authoredOn"]
    assert problems(order, SERVICE_REQUEST) == [".: requester is required (min 1)"]


# ---------------------------------------------------------------- the checker itself


@pytest.fixture(scope="module")
def order(drafts: list[Drafted]) -> dict[str, Any]:
    return next(d.resource for d in drafts if d.action == "create" and d.resource["resourceType"] == "ServiceRequest")


@pytest.fixture(scope="module")
def goal(drafts: list[Drafted]) -> dict[str, Any]:
    return next(d.resource for d in drafts if d.resource["resourceType"] == "Goal")


def test_the_checker_finds_a_missing_or_doubled_category(order: dict[str, Any], goal: dict[str, Any]) -> None:
    for resource, facts in ((order, SERVICE_REQUEST), (goal, GOAL)):
        assert problems(resource, facts) == []
        without = {k: v for k, v in resource.items() if k != "category"}
        assert any(p.startswith("category[PA]") for p in problems(without, facts))
        assert ".: category is required (min 1)" in problems(without, facts)
        doubled = {**resource, "category": resource["category"] * 2}
        assert problems(doubled, facts) == [
            "category[PA] (http://hl7.org/fhir/us/physical-activity/CodeSystem/pa-temporary-codes#PhysicalActivity) "
            "occurs 2 times, not once"]


def test_the_checker_finds_a_request_without_a_reason_authoring_or_requester(order: dict[str, Any]) -> None:
    bare = {k: v for k, v in order.items() if k not in ("reasonReference", "reasonCode", "authoredOn", "requester")}
    assert problems(bare, SERVICE_REQUEST) == [
        ".: authoredOn is required (min 1)", ".: requester is required (min 1)",
        "pa-sr-1 (.): At least one of reasonCode or reasonReference must be provided"]


def test_the_checker_finds_wrong_references_codes_and_prohibited_elements(order: dict[str, Any]) -> None:
    wrong = copy.deepcopy(order) | {"requester": {"display": "someone"}, "intent": "proposal", "doNotPerform": True,
                                    "meta": {"profile": ["http://example.org/other"]}}
    found = problems(wrong, SERVICE_REQUEST)
    assert "meta.profile does not claim " + SERVICE_REQUEST["url"] in found
    assert ".: doNotPerform is not allowed (max 0)" in found
    assert "intent 'proposal' is not one of ['original-order', 'order', 'filler-order']" in found
    assert any(p.startswith("PA-ident-1 (requester)") for p in found)
    patient = problems(order | {"requester": {"reference": "Patient/p"}}, SERVICE_REQUEST)
    assert patient == ["requester 'Patient/p' is not a reference to Practitioner or PractitionerRole"]


def test_the_checker_finds_a_goal_target_breaking_the_profile(goal: dict[str, Any]) -> None:
    target = {k: v for k, v in goal["target"][0].items() if k != "measure"}
    target["detailQuantity"] = {**target["detailQuantity"], "system": "http://example.org/units"}
    found = problems(goal | {"target": [target]}, GOAL)
    assert "gol-1 (target): Goal.target.measure is required if Goal.target.detail is populated" in found
    assert "target.detailQuantity.system is 'http://example.org/units', fixed to 'http://unitsofmeasure.org'" in found
    no_quantity = {k: v for k, v in goal["target"][0].items() if k != "detailQuantity"}
    assert problems(goal | {"target": [no_quantity]}, GOAL) == ["target: detailQuantity is required (min 1)"]
