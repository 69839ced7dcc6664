"""What a card says (docs/clinical.md, what a card says), checked on the golden examples. Doses are computed here
from the parameters of rules/, so that a tuned parameter changes the examples' recorded answers, not these tests."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cds.cards.uuids import card_uuid
from cds.clinical import dose as dosing
from cds.clinical.records import Dose
from cds.engine import Knowledge, RuleEngine
from cds.services.pipeline import Outcome
from tests.support.examples import BASE_URL, SCENARIOS, example_path, run_example


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
    assert "- Plan 20 min x 3/week (60 min; the current order since 1 Oct); done 14-20 Nov: 61 min in 3 sessions" \
        in detail
    assert re.search(r"\n- Pain \(NRS\) 4\.0 this week against 4\.0 before \(\d+ and \d+ scores\)\n", detail)
    assert f"Rule `progress` v{knowledge.rule('progress').rule.version}" in detail and knowledge.version in detail
    assert "Lindström 1992" in detail and f"({dosing.percent_change(plan.weekly, new.weekly)}†" in detail
    assert detail.endswith("\n† our threshold, not a guideline figure")
    assert card["source"] == {"label": f"Pacing CDS rules {knowledge.version}", "url": f"{BASE_URL}/rules#progress",
                              "topic": {"system": "https://pacing-cds.example.org/CodeSystem/recommendation",
                                        "code": "progress", "display": "Progress"}}
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
    assert f"{new.minutes} minutes on {new.per_week} set days" in order["patientInstruction"]


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


def test_precaution_holds_the_dose_and_says_what_was_found(engine: RuleEngine, knowledge: Knowledge) -> None:
    outcome = run("high-blood-pressure-on-progress-week", engine)
    card = card_json(outcome)
    assert card["indicator"] == "warning" and card["source"]["topic"]["code"] == "precaution"
    assert "- Resting blood pressure 186/96 mmHg on 17 Nov" in card["detail"]
    limit = f"{knowledge.values['bp_systolic_max']:g}/{knowledge.values['bp_diastolic_max']:g}"
    assert f"(limit {limit}†)" in card["detail"] and "hold" in card["summary"].lower()
    assert card["detail"].endswith("† our threshold, not a guideline figure")
    assert {f.rule_id: f.outcome for f in outcome.evaluation.trace}["progress"] == "outranked by precaution"
    assert "suggestions" not in card, "a precaution suggests no referral by default"


def test_an_unconfirmed_reading_is_a_precaution_to_recheck(engine: RuleEngine) -> None:
    card = card_json(run("preliminary-blood-pressure", engine))
    assert card["source"]["topic"]["code"] == "precaution"
    assert "- Unconfirmed reading: blood pressure 212/124 mmHg: recheck" in card["detail"]


@pytest.mark.parametrize(("name", "indicator", "priority", "reason"), [
    ("cauda-equina-undated", "critical", "stat", "Condition/cauda-equina-undated-ces"),
    ("breast-cancer-coded-specifically", "warning", "urgent", "Condition/breast-cancer-coded-specifically-cancer"),
    ("order-metastasis", "critical", "urgent", "Condition/order-metastasis-metastasis"),
])
def test_red_flag_tier_sets_the_indicator_and_the_referral_names_it(engine: RuleEngine, name: str, indicator: str,
                                                                     priority: str, reason: str) -> None:
    outcome = run(name, engine)
    card = card_json(outcome)
    assert card["indicator"] == indicator and card["selectionBehavior"] == "any"
    referral = card["suggestions"][0]["actions"][0]["resource"]
    assert referral["code"]["coding"][0]["code"] == "3457005"
    assert referral["priority"] == priority
    assert referral["reasonReference"] == [{"reference": reason}]
    assert card["suggestions"][0]["label"].startswith("Refer") and "(" in card["suggestions"][0]["label"]
    assert {f.rule_id: f.outcome for f in outcome.evaluation.trace}.get("progress") in (None, "suppressed by red-flag")


def test_order_red_flag_offers_to_remove_the_draft(engine: RuleEngine) -> None:
    card = card_json(run("order-metastasis", engine))
    remove = card["suggestions"][1]["actions"][0]
    assert remove == {"type": "delete", "description": "Remove ServiceRequest/order-metastasis-draft",
                      "resourceId": "ServiceRequest/order-metastasis-draft"}


def test_no_text_a_patient_reads_says_whatever_the_pain(engine: RuleEngine, knowledge: Knowledge) -> None:
    for name in SCENARIOS:
        for card in run(name, engine).response.to_json()["cards"]:
            for suggestion in card.get("suggestions", []):
                for action in suggestion["actions"]:
                    resource = action.get("resource", {})
                    texts = [resource.get("patientInstruction", ""), resource.get("description", {}).get("text", "")]
                    for pattern in knowledge.info.forbidden_words:
                        assert not any(re.search(pattern, text, re.IGNORECASE) for text in texts), (name, pattern)


def test_a_step_back_instruction_is_temporary(engine: RuleEngine) -> None:
    card = card_json(run("step-back-flare", engine))
    instruction = card["suggestions"][0]["actions"][0]["resource"]["patientInstruction"]
    assert instruction.startswith("For one week") and "build back" in instruction


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
    # Every element of the draft is kept; it gains only what pa-servicerequest requires and it lacked.
    assert {k: v for k, v in updated.items() if k not in ("occurrenceTiming", "patientInstruction")} == \
        {k: v for k, v in draft.items() if k not in ("occurrenceTiming", "patientInstruction")} | {
            "category": [{"coding": [{"system": "http://hl7.org/fhir/us/physical-activity/CodeSystem/pa-temporary-codes",
                                      "code": "PhysicalActivity", "display": "Physical Activity"}]}],
            "requester": {"reference": "PractitionerRole/pcp-1"}}
    assert "- Proposed: 90 min/week; tolerated or planned: 60 min/week (+50%)" in card["detail"]


def test_skipped_readings_are_reported(engine: RuleEngine) -> None:
    outcome = run("pounds-and-fahrenheit", engine)
    assert any("unit 'K' not understood" in s for s in outcome.record.skipped)
    assert "- Set aside: 1 reading (unit not understood)" in card_json(outcome)["detail"]


@pytest.mark.parametrize("name", SCENARIOS)
def test_every_card_summary_is_short_and_carries_no_empty_placeholder(engine: RuleEngine, name: str) -> None:
    for card in run(name, engine).response.to_json()["cards"]:
        assert len(card["summary"]) < 140
        assert "  " not in card["summary"] and "()" not in card["summary"] and not card["summary"].endswith(": ")
        assert "{" not in card["summary"] and "{" not in card["detail"].split("---")[0]


FHIR_ID = re.compile(r"\b(ServiceRequest|Observation|Condition|Goal|Patient|Device)/[A-Za-z0-9\-.]+")
WRONG_PLURAL = re.compile(r"(?<![\d.,])1 (sessions|days|readings|scores|weeks|flare weeks)\b")


@pytest.mark.parametrize("name", SCENARIOS)
def test_a_card_reads_in_ten_seconds(engine: RuleEngine, name: str) -> None:
    """At most 8 short lines, no FHIR ids or jargon in prose, right plurals, and one footnote for our thresholds."""
    for card in run(name, engine).response.to_json()["cards"]:
        detail = card["detail"]
        lines = [line for line in detail.splitlines() if line.strip()]
        assert len(lines) <= 8, (name, lines)
        assert not FHIR_ID.search(detail), (name, FHIR_ID.search(detail))
        assert not WRONG_PLURAL.search(detail), (name, WRONG_PLURAL.search(detail))
        assert not re.search(r"FITT|cut-off", detail), name
        daggers = detail.count("†")
        footnote = detail.endswith("\n† our threshold, not a guideline figure")
        assert footnote == (daggers > 1), (name, "a dagger in the text goes with the footnote, and only then")


@given(st.text(), st.lists(st.text(), max_size=4))
def test_a_card_uuid_is_the_name_based_uuid_of_rfc_4122(hook_instance: str, parts: list[str]) -> None:
    """Cards, suggestions and resources keep the identifiers that uuid.uuid5 gives: feedback refers to them."""
    name = "pacing-cds:" + ":".join((hook_instance, *parts))
    assert card_uuid(hook_instance, *parts) == str(uuid.uuid5(uuid.NAMESPACE_URL, name))
