"""Derived features of docs/clinical.md, on records built in memory."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from cds.clinical.features import compute, condition_facts, day_words, vitals_fact
from cds.clinical.records import BloodPressure, ConditionRecord, Dose, OrderRecord, PatientRecord, Reading, StepGoal
from cds.engine import Knowledge

NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def ago(days: float, hour: int = 8) -> datetime:
    return (NOW - timedelta(days=days)).replace(hour=hour, minute=0)


def params(knowledge: Knowledge) -> dict[str, float]:
    return {name: p.value for name, p in knowledge.parameters.items()}


def with_plan(minutes: int = 20, per_week: int = 3) -> PatientRecord:
    record = PatientRecord("p")
    record.orders.append(OrderRecord("ServiceRequest/o", "current", ago(60), Dose(minutes, per_week), {}, ago(60)))
    return record


def test_adherence_and_weekly_minutes(knowledge: Knowledge) -> None:
    record = with_plan()
    record.sessions = [Reading(ago(d), 20, "s") for d in (1, 3)] + [Reading(ago(9), 20, "s")]
    f = compute(record, NOW, params(knowledge))
    assert f.measure == "minutes" and f.weekly_minutes == 40 and f.sessions_last7 == 2
    assert round(f.adherence, 3) == round(40 / 60, 3)


def test_pain_delta_and_a_sustained_flare(knowledge: Knowledge) -> None:
    record = with_plan()
    record.pain = [Reading(ago(d, 20), 3, "p") for d in range(8, 28)]
    record.pain += [Reading(ago(d, 20), 6, "p") for d in range(0, 4)]
    f = compute(record, NOW, params(knowledge))
    assert (f.pain_now, f.pain_baseline, f.pain_delta) == (6, 3, 3)
    assert f.flare and f.flare_weeks == 1


def test_a_single_high_reading_is_not_a_flare(knowledge: Knowledge) -> None:
    """Two or more readings at baseline + 2 spanning 24 h are needed (derived composite)."""
    record = with_plan()
    record.pain = [Reading(ago(d, 20), 3, "p") for d in range(8, 28)]
    record.pain += [Reading(ago(1, 20), 3, "p"), Reading(ago(1, 21), 3, "p"), Reading(ago(0, 7), 7, "p"),
                    Reading(ago(0, 8), 7, "p")]  # the two high ones are an hour apart
    f = compute(record, NOW, params(knowledge))
    assert not f.flare


def test_too_few_readings_give_no_pain_delta(knowledge: Knowledge) -> None:
    record = with_plan()
    record.pain = [Reading(ago(d), 4, "p") for d in (1, 2, 10, 11)]
    f = compute(record, NOW, params(knowledge))
    assert f.pain_delta is None and f.patient_fact().get("pain_delta") is None


def test_one_peg_rise_is_unconfirmed_and_two_a_day_apart_are_a_flare(knowledge: Knowledge) -> None:
    record = with_plan()
    record.peg = [Reading(ago(d), 4.0, "g") for d in (9, 15, 20)] + [Reading(ago(1), 5.2, "g")]
    f = compute(record, NOW, params(knowledge))
    assert not f.flare and f.peg_unconfirmed and f.pain_scale == "PEG" and round(f.pain_delta, 1) == 1.2
    assert f.patient_fact()["peg_unconfirmed"] is True
    record.peg.append(Reading(ago(3), 5.4, "g"))  # a second high PEG two days earlier confirms it
    f = compute(record, NOW, params(knowledge))
    assert f.flare and not f.peg_unconfirmed
    record.peg[-1] = Reading(ago(1, 2), 5.4, "g")  # the same day, six hours apart: not yet confirmed
    assert not compute(record, NOW, params(knowledge)).flare


def test_days_on_the_dose_and_a_recent_step_back(knowledge: Knowledge) -> None:
    record = PatientRecord("p")
    record.orders.append(OrderRecord("ServiceRequest/old", "history", ago(40), Dose(25, 4), {}, ago(40)))
    record.orders.append(OrderRecord("ServiceRequest/new", "current", ago(3), Dose(20, 4),
                                     {"replaces": [{"reference": "ServiceRequest/old"}]}, ago(3)))
    f = compute(record, NOW, params(knowledge))
    assert f.days_on_dose == 3 and f.days_since_step_back == 3
    assert f.review_days(params(knowledge)) == 4  # the step-back hold ends in four days
    record.orders[1] = OrderRecord("ServiceRequest/new", "current", ago(3), Dose(30, 4), {}, ago(3))
    f = compute(record, NOW, params(knowledge))
    assert f.days_on_dose == 3 and f.days_since_step_back is None  # a raise is no step-back
    record.orders[1] = OrderRecord("ServiceRequest/new", "current", None, Dose(30, 4), {}, None)
    assert "days_on_dose" not in compute(record, NOW, params(knowledge)).patient_fact()


def test_low_adherence_weeks_count_back_from_now(knowledge: Knowledge) -> None:
    record = with_plan()  # 60 min a week planned
    record.sessions = [Reading(ago(d), 20, "s") for d in (1, 8, 15)]  # 20 of 60 in each of three weeks
    assert compute(record, NOW, params(knowledge)).low_adherence_weeks == 3
    record.sessions.append(Reading(ago(9), 20, "s"))  # the second week reaches 40 of 60
    assert compute(record, NOW, params(knowledge)).low_adherence_weeks == 1


def test_the_ratio_needs_a_minimum_chronic_volume(knowledge: Knowledge) -> None:
    record = with_plan(5, 1)
    record.sessions = [Reading(ago(d), 5, "s") for d in range(0, 28, 7)] + [Reading(ago(1), 10, "s")]
    f = compute(record, NOW, params(knowledge))
    assert f.acwr is None and "acwr" not in f.patient_fact()  # about 25 min a week: under 60
    record.sessions = [Reading(ago(d), 30, "s") for d in range(0, 28, 2)]
    assert compute(record, NOW, params(knowledge)).acwr is not None


def test_daily_steps_show_inactivity_whatever_carries_the_dose(knowledge: Knowledge) -> None:
    record = with_plan()
    record.sessions = [Reading(ago(d), 20, "s") for d in range(0, 28, 2)]
    for d in range(14):
        record.steps[ago(d).date()] = Reading(ago(d), 2400, "s")
    f = compute(record, NOW, params(knowledge))
    assert f.measure == "minutes" and f.pattern_measure == "steps" and f.inactive


def test_never_inactive_at_or_above_the_step_quota(knowledge: Knowledge) -> None:
    record = PatientRecord("p")
    record.step_goal = StepGoal("Goal/g", 3000, {}, ago(30))
    for d in range(14):
        record.steps[ago(d).date()] = Reading(ago(d), 3200, "s")
    f = compute(record, NOW, params(knowledge))
    assert f.adherence is not None and f.adherence > 1 and not f.inactive
    record.step_goal = StepGoal("Goal/g", 4000, {}, ago(30))
    assert compute(record, NOW, params(knowledge)).inactive


def test_a_boom_bust_above_the_quota_is_marked(knowledge: Knowledge) -> None:
    record = PatientRecord("p")
    record.step_goal = StepGoal("Goal/g", 6000, {}, ago(40))
    for d in range(28):
        value = 6000 if d >= 14 else (11500 if d % 3 == 2 else 2200 if d % 3 == 1 else 5800)
        record.steps[ago(d).date()] = Reading(ago(d), value, "s")
    f = compute(record, NOW, params(knowledge))
    assert f.boom_bust and f.boom_above_plan
    record.step_goal = StepGoal("Goal/g", 12000, {}, ago(40))
    f = compute(record, NOW, params(knowledge))
    assert f.boom_bust and not f.boom_above_plan


def test_acute_chronic_ratio_and_steps_measure(knowledge: Knowledge) -> None:
    record = PatientRecord("p")
    record.step_goal = StepGoal("Goal/g", 5000, {})
    for d in range(28):
        record.steps[ago(d).date()] = Reading(ago(d), 8000 if d < 7 else 4000, "s")
    f = compute(record, NOW, params(knowledge))
    assert f.measure == "steps" and f.has_prescription
    assert round(f.acwr, 2) == round(8000 / ((7 * 8000 + 21 * 4000) / 28), 2)
    assert f.mean_daily_steps == 8000 and f.adherence == 1.6


def test_boom_bust_needs_variability_and_busts_after_booms(knowledge: Knowledge) -> None:
    record = PatientRecord("p")
    record.step_goal = StepGoal("Goal/g", 5000, {})
    for d in range(28):
        value = 5000 if d >= 14 else (9000 if d % 3 == 2 else 1500 if d % 3 == 1 else 5000)
        record.steps[ago(d).date()] = Reading(ago(d), value, "s")
    assert compute(record, NOW, params(knowledge)).boom_bust
    for d in range(14):
        record.steps[ago(d).date()] = Reading(ago(d), 5000 + (d % 2) * 300, "s")
    assert not compute(record, NOW, params(knowledge)).boom_bust
    # Two booms each followed by a bust, in a fortnight otherwise steady: the pairs are there, the variation is
    # below boom_bust_cv (about 0.27), so it is not a boom-bust pattern.
    for d in range(14):
        record.steps[ago(d).date()] = Reading(ago(d), {11: 7600, 10: 2500, 5: 7600, 4: 2500}.get(d, 5000), "s")
    f = compute(record, NOW, params(knowledge))
    assert not f.boom_bust
    record.steps[ago(8).date()] = Reading(ago(8), 100, "s")  # one more quiet day: more variation, the same pairs
    record.steps[ago(7).date()] = Reading(ago(7), 100, "s")
    record.steps[ago(2).date()] = Reading(ago(2), 100, "s")
    assert compute(record, NOW, params(knowledge)).boom_bust


def test_inactivity_from_steps_and_from_the_exercise_vital_sign(knowledge: Knowledge) -> None:
    record = PatientRecord("p")
    for d in range(6):
        record.steps[ago(d).date()] = Reading(ago(d), 3000, "s")
    f = compute(record, NOW, params(knowledge))
    assert f.inactive and "3,000 steps" in (f.inactive_reason or "")
    evs = PatientRecord("p")
    evs.evs_minutes = [Reading(ago(3), 0, "e")]
    assert compute(evs, NOW, params(knowledge)).inactive


def test_data_gap_features(knowledge: Knowledge) -> None:
    record = with_plan()
    record.sessions = [Reading(ago(20), 20, "s")]
    record.pain = [Reading(ago(16), 4, "p")]
    f = compute(record, NOW, params(knowledge))
    assert (f.days_since_activity, f.days_since_pain) == (20, 16)
    assert f.patient_fact()["days_since_activity"] == 20
    nothing = compute(PatientRecord("p"), NOW, params(knowledge)).patient_fact()
    assert "days_since_activity" not in nothing and "days_since_pain" not in nothing


def test_baseline_and_start_without_prescription(knowledge: Knowledge) -> None:
    record = PatientRecord("p")
    record.sessions = [Reading(ago(d), 25, "s") for d in (1, 3, 5, 8, 10, 12)]
    f = compute(record, NOW, params(knowledge))
    assert not f.has_prescription and f.valid_days == 6
    assert f.start == Dose(20, 3) and f.plan == Dose(20, 3) and f.plan_source == "starting dose"


def test_planned_dose_below_the_starting_quota(knowledge: Knowledge) -> None:
    record = with_plan(10, 2)
    record.orders = [OrderRecord("ServiceRequest/o", "current", ago(2), Dose(10, 2), {})]
    record.sessions = [Reading(ago(d), 30, "s") for d in (3, 5, 8, 10, 12, 14)]
    assert compute(record, NOW, params(knowledge)).planned_below_start


def test_vitals_and_condition_facts(knowledge: Knowledge) -> None:
    record = PatientRecord("p")
    record.blood_pressure = [BloodPressure(ago(40), 190, 115, "b"), BloodPressure(ago(2), 150, 92, "b"),
                             BloodPressure(ago(1), 212, 124, "b2", confirmed=False)]
    record.temperature = [Reading(ago(10), 39.0, "t"), Reading(ago(3), 37.1, "t")]
    record.weight = [Reading(ago(300), 80.0, "w"), Reading(ago(2), 75.0, "w")]
    record.conditions = [ConditionRecord("S32.010A", {"vertebral-fracture": "S32.010A"}, False, ago(4), "Condition/c"),
                         ConditionRecord("192970008", {"cauda-equina": "192970008"}, False, None, "Condition/u"),
                         ConditionRecord("82423001", {}, True, None, "Condition/cp")]
    fact = vitals_fact(record, NOW, params(knowledge))
    assert fact == {"t": "vitals", "systolic": 150, "diastolic": 92, "bp_when": f"{ago(2).day} {ago(2):%b}",
                    "systolic_unconfirmed": 212, "diastolic_unconfirmed": 124, "temperature_max": 37.1,
                    "weight_loss_percent": 6.25, "weight_loss_explained": False}
    explained = vitals_fact(record, NOW, params(knowledge), frozenset({"vertebral-fracture"}))
    assert explained is not None and explained["weight_loss_explained"] is True
    facts = condition_facts(record, NOW)
    assert facts[0] == {"t": "condition", "value_set": "vertebral-fracture", "code": "S32.010A", "clinical": "current",
                        "source": "Condition/c", "days_since_recorded": 4, "recorded": f"{ago(4).day} {ago(4):%b}"}
    assert facts[1] == {"t": "condition", "value_set": "cauda-equina", "code": "192970008", "clinical": "current",
                        "source": "Condition/u"}
    assert len(facts) == 2, "a condition in no value set gives no fact"
    assert vitals_fact(PatientRecord("p"), NOW, params(knowledge)) is None


def test_a_day_is_written_with_the_english_month_whatever_the_month() -> None:
    written = [day_words(date(2026, month, 1 + month)) for month in range(1, 13)]
    assert written == ["2 Jan", "3 Feb", "4 Mar", "5 Apr", "6 May", "7 Jun", "8 Jul", "9 Aug", "10 Sep", "11 Oct",
                       "12 Nov", "13 Dec"]
    assert day_words(datetime(2026, 11, 27, 23, 59, tzinfo=UTC)) == "27 Nov"
