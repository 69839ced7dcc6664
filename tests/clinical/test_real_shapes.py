"""FHIR shapes that EHRs, Synthea and the HL7 Physical Activity IG send, read into records; and who the rules are
for. The end-to-end answers to whole charts of these shapes are in tests/test_real_data.py."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest

from cds.clinical.records import DEVICE_NOT_WORN, INCOMPLETE_PANEL, PatientRecord, eligibility
from cds.engine import Knowledge, RuleEngine
from cds.fhir.readers.builder import build_record
from cds.fhir.readers.orders import order_dose
from cds.services.pipeline import evaluate_patient
from tests.support import data

PA = "http://hl7.org/fhir/us/physical-activity/CodeSystem/pa-temporary-codes"
LOINC = "http://loinc.org"


def obs(oid: str, code: str, value: float | None, unit: str, when: str = "2026-11-18T08:00:00Z",
        **extra: Any) -> dict[str, Any]:
    resource = data.observation("p", oid, code, value or 0, unit, data.NOW)
    resource.update({"effectiveDateTime": when, **extra})
    if value is None:
        del resource["valueQuantity"]
    if "effectivePeriod" in extra:
        del resource["effectiveDateTime"]
    return resource


def component(system: str, code: str, value: float, unit: str) -> dict[str, Any]:
    return {"code": {"coding": [{"system": system, "code": code}]},
            "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}}


def read(knowledge: Knowledge, *resources: dict[str, Any]) -> PatientRecord:
    return build_record("p", list(resources), knowledge, data.NOW)


def test_the_older_blood_pressure_panel_and_position_specific_pressures_are_read(knowledge: Knowledge) -> None:
    panel = obs("bp1", "55284-4", None, "", component=[component(LOINC, "8480-6", 185, "mm[Hg]"),
                                                         component(LOINC, "8462-4", 111, "mm[Hg]")])
    sitting = obs("bp2", "8459-0", 150, "mm[Hg]", when="2026-11-17T08:00:00Z")
    record = read(knowledge, panel, sitting)
    assert [(r.systolic, r.diastolic) for r in record.blood_pressure] == [(150, None), (185, 111)]


@pytest.mark.parametrize("code", ["8331-1", "8332-9", "8333-7", "8328-7", "75539-7"])
def test_site_specific_temperatures_are_read(knowledge: Knowledge, code: str) -> None:
    assert [r.value for r in read(knowledge, obs("t", code, 38.6, "Cel")).temperature] == [38.6]


def test_the_two_question_exercise_vital_sign_of_one_day_is_a_weekly_figure(knowledge: Knowledge) -> None:
    record = read(knowledge, obs("d", "89555-7", 5, "d/wk"), obs("m", "68516-4", 40, "min/d"),
                  obs("d2", "89555-7", 3, "d/wk", when="2026-11-10T08:00:00Z"))
    assert [(r.value, r.source) for r in record.evs_minutes] == [(200, "Observation/m")]
    assert [(s.source, s.reason) for s in record.set_aside] == [("Observation/d2", INCOMPLETE_PANEL)]


def test_an_activity_panel_counts_once_with_its_own_value(knowledge: Knowledge) -> None:
    members = [{"reference": "Observation/mod"}, {"reference": "http://ehr.example/fhir/Observation/vig"}]
    panel = obs("panel", "55411-3", 40, "min", hasMember=members)
    record = read(knowledge, obs("mod", "55411-3", 25, "min"), panel, obs("vig", "55411-3", 15, "min"))
    assert [(r.value, r.source) for r in record.sessions] == [(40, "Observation/panel")]


def test_an_activity_panel_without_a_value_counts_as_its_longest_member(knowledge: Knowledge) -> None:
    panel = obs("panel", "x", None, "", hasMember=[{"reference": "Observation/dur"}, {"reference": "Observation/vig"}])
    panel["code"] = {"coding": [{"system": PA, "code": "PAPanel"}]}
    record = read(knowledge, panel, obs("dur", "55411-3", 45, "min"), obs("vig", "55411-3", 35, "min"))
    assert [(r.value, r.source) for r in record.sessions] == [(45, "Observation/panel")]
    alone = read(knowledge, obs("dur", "55411-3", 45, "min"), obs("vig", "55411-3", 35, "min"))
    assert [r.value for r in alone.sessions] == [45], "without their panel, one source's overlapping sessions unite"
    later = read(knowledge, obs("dur", "55411-3", 45, "min"),
                 obs("vig", "55411-3", 35, "min", when="2026-11-18T10:00:00Z"))
    assert sorted(r.value for r in later.sessions) == [35, 45], "sessions apart in time count each"


@pytest.mark.parametrize("period", [{"start": "2026-11-18T00:00:00Z", "end": "2026-11-19T00:00:00Z"},
                                    {"start": "2026-11-18", "end": "2026-11-18"}])
def test_a_one_day_period_belongs_to_the_day_it_starts(knowledge: Knowledge, period: dict[str, str]) -> None:
    record = read(knowledge, obs("s", "41950-7", 9400, "/d", effectivePeriod=period))
    assert {str(d): r.value for d, r in record.steps.items()} == {"2026-11-18": 9400}
    assert record.steps[date(2026, 11, 18)].when.date() == date(2026, 11, 18)


def test_a_day_the_device_was_barely_worn_is_set_aside(knowledge: Knowledge) -> None:
    worn = obs("worn", "41950-7", 5400, "/d", component=[component(PA, "DeviceActivePercentage", 92, "%")])
    barely = obs("barely", "41950-7", 450, "/d", when="2026-11-17T23:00:00Z",
                 component=[component(PA, "DeviceActivePercentage", 8, "%")])
    record = read(knowledge, worn, barely)
    assert [r.value for r in record.steps.values()] == [5400]
    assert [(s.source, s.reason) for s in record.set_aside] == [("Observation/barely", DEVICE_NOT_WORN)]
    assert "8 %" in record.set_aside[0].why


def test_a_goal_in_minutes_a_week_is_read(knowledge: Knowledge) -> None:
    goal = {"resourceType": "Goal", "id": "g", "lifecycleStatus": "active",
            "target": [{"measure": {"coding": [{"system": LOINC, "code": "82290-8"}]},
                        "detailQuantity": {"value": 100, "unit": "min/wk", "code": "min/wk"}}]}
    assert read(knowledge, goal).minute_goal is not None and read(knowledge, goal).minute_goal.weekly_minutes == 100


def test_a_dose_is_read_from_the_instruction_of_a_prescription_with_a_period(knowledge: Knowledge) -> None:
    order = {**data.exercise_order("p", "rx"), "occurrencePeriod": {"start": "2026-10-15", "end": "2027-01-15"},
             "patientInstruction": "Walk 30 minutes, 3 times a week, at an easy pace."}
    del order["occurrenceTiming"]
    record = read(knowledge, order)
    current = record.current_order
    assert current is not None and current.dose is not None and current.dose.words() == "30 min x 3/week"
    assert current.start is not None and current.start.date() == date(2026, 10, 15)
    assert order_dose({**order, "patientInstruction": "Walk most days."}) is None


def test_a_careplan_exercise_activity_is_read_as_the_plan(knowledge: Knowledge) -> None:
    plan = {"resourceType": "CarePlan", "id": "cp", "status": "active", "intent": "plan",
            "period": {"start": "2026-10-01"},
            "activity": [{"detail": {"status": "in-progress", "code": {"coding": [
                {"system": "http://snomed.info/sct", "code": "229065009"}]},
                "scheduledTiming": {"repeat": {"frequency": 2, "period": 1, "periodUnit": "wk", "duration": 25,
                                               "durationUnit": "min"}}}},
                         {"detail": {"status": "completed", "code": {"coding": [
                             {"system": "http://snomed.info/sct", "code": "229065009"}]}}}]}
    record = read(knowledge, plan)
    assert [(o.reference, o.status, o.dose.words() if o.dose else None) for o in record.orders] == [
        ("CarePlan/cp#activity-1", "current", "25 min x 2/week"), ("CarePlan/cp#activity-2", "history", None)]
    assert record.current_order is not None and record.current_order.reference == "CarePlan/cp#activity-1"


def born(when: str) -> dict[str, Any]:
    return {**data.patient("p"), "birthDate": when}


@pytest.mark.parametrize(("birth", "eligible"), [("2008-11-20", True), ("2008-11-21", False), ("1970", True)])
def test_adults_only(knowledge: Knowledge, birth: str, eligible: bool) -> None:
    record = read(knowledge, born(birth), data.condition("p", "c1"))
    assert eligibility(record, date(2026, 11, 20), 18).eligible is eligible


def test_no_chronic_pain_gives_no_cards_and_no_birth_date_is_taken_for_an_adult(engine: RuleEngine) -> None:
    hypertension = {**data.condition("p", "c2", "38341003")}
    outcome = evaluate_patient(engine, "pacing-review", "patient-view", "h", "p",
                               [born("1960-01-01"), hypertension, *data.pain_scores("p", 10)], data.NOW)
    assert outcome.response.cards == [] and not outcome.eligibility.eligible
    assert "no active chronic-pain condition" in outcome.eligibility.reason
    unborn = {k: v for k, v in data.patient("p").items() if k != "birthDate"}
    outcome = evaluate_patient(engine, "pacing-review", "patient-view", "h", "p",
                               [unborn, data.condition("p", "c1"), *data.pain_scores("p", 10)], data.NOW)
    assert outcome.eligibility.eligible and outcome.eligibility.age_assumed
    assert outcome.response.cards, "a chart without a birth date is answered, as an adult's"
    assert all("Age not recorded: this assumes an adult" in (card.detail or "") for card in outcome.response.cards)


def test_an_order_hook_draft_for_pain_makes_an_adult_eligible(engine: RuleEngine) -> None:
    draft = {**data.exercise_order("p", "d1", status="draft", minutes=45),
             "reasonCode": [{"coding": [{"system": "http://snomed.info/sct", "code": "279039007"}]}]}
    sessions = [data.observation("p", f"s{i}", "55411-3", 20, "min", data.NOW - timedelta(days=2 * i + 1))
                for i in range(6)]
    resources = [born("1960-01-01"), *sessions]
    without = evaluate_patient(engine, "exercise-order-select", "order-select", "h", "p", resources, data.NOW,
                               {"ServiceRequest/d1": {k: v for k, v in draft.items() if k != "reasonCode"}})
    assert without.response.cards == []
    with_reason = evaluate_patient(engine, "exercise-order-select", "order-select", "h", "p", resources, data.NOW,
                                   {"ServiceRequest/d1": draft})
    assert with_reason.eligibility.eligible and with_reason.response.cards


def goal(**fields: Any) -> dict[str, Any]:
    base = {"resourceType": "Goal", "id": "g", "lifecycleStatus": "active", "subject": {"reference": "Patient/p"},
            "description": {"text": "Daily steps"},
            "target": [{"measure": {"coding": [{"system": LOINC, "code": "41950-7"}]},
                        "detailQuantity": {"value": 5000, "unit": "steps/day", "code": "/d"}}]}
    base.update(fields)
    return {k: v for k, v in base.items() if v is not None}


@pytest.mark.parametrize(("fields", "quota"), [
    ({}, 5000.0),
    ({"lifecycleStatus": "accepted"}, 5000.0),  # rules/statuses.yaml: accepted and on-hold are goals in force too
    ({"lifecycleStatus": "on-hold"}, 5000.0),
    ({"target": [{"measure": {"coding": [{"system": LOINC, "code": "41950-7"}]}}]}, None),  # a step goal, no quota
    ({"target": None, "description": {"text": "Walk 6,500 steps a day"}}, 6500.0),  # the quota written in words
    ({"target": None, "description": {"text": "More steps each day"}}, None),  # steps, no number
    ({"target": None, "description": {"text": "Move more"},
      "category": [{"coding": [{"system": PA, "code": "PhysicalActivity"}]}]}, None),  # a PA goal with no dose
])
def test_a_step_goal_in_force_and_its_quota(knowledge: Knowledge, fields: dict[str, Any], quota: float | None) -> None:
    record = read(knowledge, goal(**fields))
    assert record.step_goal is not None and record.step_goal.steps_per_day == quota


@pytest.mark.parametrize("fields", [{"lifecycleStatus": "proposed"}, {"lifecycleStatus": "completed"},
                                    {"lifecycleStatus": "entered-in-error"},
                                    {"target": None, "description": {"text": "Lose weight"}}])
def test_goals_that_are_no_step_quota_in_force(knowledge: Knowledge, fields: dict[str, Any]) -> None:
    assert read(knowledge, goal(**fields)).step_goal is None


def test_a_status_no_table_knows_is_set_aside_and_reported(knowledge: Knowledge) -> None:
    record = read(knowledge, goal(lifecycleStatus="in-force"), obs("o", "72514-3", 5, "{score}", status="done"))
    assert record.step_goal is None and record.pain == []
    assert sorted((s.source, s.reason) for s in record.set_aside) == [
        ("Goal/g", "status not understood"), ("Observation/o", "status not understood")]
    assert record.readings_set_aside() == [("status not understood", 2)]
