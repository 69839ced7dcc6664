"""What a card says (docs/clinical.md, what a card says), checked on the golden examples. Doses are computed here
from the parameters of rules/, so that a tuned parameter changes the examples' recorded answers, not these tests."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cds.clinical import dose as dosing
from cds.clinical.records import Dose
from cds.engine import Knowledge, RuleEngine
from cds.services.pipeline import Outcome
from tests.support.examples import SCENARIOS, example_path, run_example


def run(name: str, engine: RuleEngine, change: Any = None) -> Outcome:
    return run_example(name, engine, change)


def card_json(outcome: Outcome, index: int = 0) -> dict[str, Any]:
    return outcome.response.to_json()["cards"][index]


def test_progress_card_carries_number_data_rule_and_evidence(engine: RuleEngine, knowledge: Knowledge) -> None:
    card = card_json(run("progress-walking", engine))
    plan, new = Dose(20, 3), dosing.progress(Dose(20, 3), knowledge.values)
    assert card["summary"] == f"Progress exercise to {new.words()} ({dosing.percent_change(plan.weekly, new.weekly)})"
    assert card["indicator"] == "info"
    detail = card["detail"]
    assert "- Plan: 20 min x 3/week (60 min/week), from ServiceRequest/progress-walking-order" in detail
    assert "- Done 2026-11-14 to 2026-11-20:" in detail and "of plan)" in detail
    assert "- Pain (NRS): now 4.0" in detail and "against baseline 4.0" in detail
    assert "Rule `progress` v0.1.0" in detail and knowledge.version in detail
    assert "Garber 2011" in detail and "derived" in detail
    assert card["source"] == {"label": f"Pacing CDS rules {knowledge.version}", "topic": {
        "system": "https://pacing-cds.example.org/CodeSystem/recommendation", "code": "progress",
        "display": "Progress"}}
    assert [r["display"] for r in card["overrideReasons"]] == [
        "Patient declined", "Clinical judgement", "Already addressed", "Data not representative"]


def test_progress_suggests_a_pa_ig_service_request_replacing_the_current_order(engine: RuleEngine,
                                                                             knowledge: Knowledge) -> None:
    card = card_json(run("progress-walking", engine))
    new = dosing.progress(Dose(20, 3), knowledge.values)
    assert card["selectionBehavior"] == "at-most-one"
    [suggestion] = card["suggestions"]
    [action] = suggestion["actions"]
    order = action["resource"]
    assert action["type"] == "create" and suggestion["isRecommended"] is True
    assert order["resourceType"] == "ServiceRequest" and order["status"] == "draft" and order["intent"] == "order"
    assert order["meta"]["profile"] == [
        "http://hl7.org/fhir/us/physical-activity/StructureDefinition/pa-servicerequest"]
    assert order["code"]["coding"][0]["code"] == "229065009"
    assert order["occurrenceTiming"]["repeat"] == {"frequency": new.per_week, "period": 1, "periodUnit": "wk",
                                                   "duration": new.minutes, "durationUnit": "min"}
    assert order["performer"] == [{"reference": "Patient/progress-walking"}]
    assert order["reasonReference"] == [{"reference": "Condition/progress-walking-chronic-pain"}]
    assert order["replaces"] == [{"reference": "ServiceRequest/progress-walking-order"}]
    assert f"{new.minutes} minutes, {new.per_week} times a week" in order["patientInstruction"]


def test_steps_only_patients_get_a_goal(engine: RuleEngine, knowledge: Knowledge) -> None:
    card = card_json(run("progress-steps", engine))
    goal = card["suggestions"][0]["actions"][0]["resource"]
    assert goal["resourceType"] == "Goal"
    assert goal["target"][0]["measure"]["coding"][0]["code"] == "41950-7"
    quota = dosing.progress_quota(5000, knowledge.values)  # the example's goal is 5,000 steps a day
    assert goal["target"][0]["detailQuantity"] == {"value": quota, "unit": "steps/day",
                                                   "system": "http://unitsofmeasure.org", "code": "/d"}


def test_uuids_derive_from_the_hook_instance(engine: RuleEngine) -> None:
    first = card_json(run("progress-walking", engine))
    again = card_json(run("progress-walking", engine))
    other = card_json(run("progress-walking", engine, lambda b: b.update(hookInstance="another-instance")))
    assert first["uuid"] == again["uuid"] and first == again
    assert other["uuid"] != first["uuid"]
    assert other["suggestions"][0]["uuid"] != first["suggestions"][0]["uuid"]


def test_red_flag_card_lists_the_flag_and_suppresses_progress(engine: RuleEngine, knowledge: Knowledge) -> None:
    outcome = run("red-flag-on-progress-week", engine)
    card = card_json(outcome)
    assert card["indicator"] == "critical"
    window = knowledge.values["vitals_window_days"]
    assert f"- Latest resting blood pressure 186/96 mmHg (last {window} days)" in card["detail"]
    assert "derived" in card["detail"]
    assert {f.rule_id: f.outcome for f in outcome.evaluation.trace}["progress"] == "suppressed by red-flag"
    assert card["suggestions"][0]["actions"][0]["resource"]["code"]["coding"][0]["code"] == "3457005"


def test_order_red_flag_offers_to_remove_the_draft(engine: RuleEngine, knowledge: Knowledge) -> None:
    card = card_json(run("order-red-flag", engine))
    assert card["selectionBehavior"] == "any"
    remove = card["suggestions"][1]["actions"][0]
    assert remove == {"type": "delete", "description": "Remove ServiceRequest/order-red-flag-draft",
                      "resourceId": "ServiceRequest/order-red-flag-draft"}
    assert f"Temperature up to 38.6 Cel in the last {knowledge.values['fever_window_days']} days" in card["detail"]


def test_order_dose_jump_updates_the_draft_in_its_entirety(engine: RuleEngine, knowledge: Knowledge) -> None:
    outcome = run("order-dose-jump", engine)
    card = card_json(outcome)
    paced = dosing.progress(Dose(20, 3), knowledge.values)  # one step above the plan of 20 min x 3
    assert card["summary"] == f"This order jumps to 30 min x 3/week; the paced dose is {paced.words()}"
    action = card["suggestions"][0]["actions"][0]
    assert action["type"] == "update"
    draft = json.loads(example_path("order-dose-jump").read_text())["context"]["draftOrders"][
        "entry"][0]["resource"]
    updated = action["resource"]
    assert updated["id"] == draft["id"] and updated["status"] == "draft"
    assert updated["occurrenceTiming"]["repeat"]["duration"] == paced.minutes
    assert {k: v for k, v in updated.items() if k not in ("occurrenceTiming", "patientInstruction")} == \
        {k: v for k, v in draft.items() if k not in ("occurrenceTiming", "patientInstruction")}
    assert "- Proposed: 90 min/week; tolerated or planned: 60 min/week (+50%)" in card["detail"]


def test_skipped_readings_are_reported(engine: RuleEngine) -> None:
    outcome = run("pounds-and-fahrenheit", engine)
    assert any("unit 'K' not understood" in s for s in outcome.record.skipped)
    assert "- Not used: 1 item (status, unit or date not usable)" in card_json(outcome)["detail"]


@pytest.mark.parametrize("name", SCENARIOS)
def test_every_card_summary_is_short_and_carries_no_empty_placeholder(engine: RuleEngine, name: str) -> None:
    for card in run(name, engine).response.to_json()["cards"]:
        assert len(card["summary"]) < 140
        assert "  " not in card["summary"] and "()" not in card["summary"] and not card["summary"].endswith(": ")
        assert "{" not in card["summary"] and "{" not in card["detail"].split("---")[0]
