"""FHIR -> records: the data hygiene of docs/clinical.md."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from cds.clinical.records import (
    DATED_IN_FUTURE,
    IGNORED,
    IMPLAUSIBLE,
    LONGER_THAN_A_DAY,
    STATUS_NOT_FINAL,
    UNIT_NOT_UNDERSTOOD,
    PatientRecord,
    Reading,
    SetAside,
)
from cds.engine import Knowledge, RuleEngine
from cds.fhir.readers.builder import build_record
from cds.fhir.readers.common import parse_time
from cds.fhir.readers.orders import order_dose
from cds.services.pipeline import evaluate_patient
from tests.support import data


def obs(oid: str, code: str, value: float, unit: str, when: str = "2026-11-10T08:00:00Z", status: str = "final",
        **extra: Any) -> dict[str, Any]:
    resource = data.observation("p", oid, code, value, unit, data.NOW)
    resource.update({"status": status, "effectiveDateTime": when, **extra})
    if "effectivePeriod" in extra:  # effective[x] is one element: a period replaces the moment
        del resource["effectiveDateTime"]
    return resource


def interval(oid: str, value: float, start: str, end: str, device: str | None = "Device/watch",
             code: str = "55423-8", **extra: Any) -> dict[str, Any]:
    """Steps counted by a wearable over an interval of the day."""
    resource = obs(oid, code, value, "{steps}", effectivePeriod={"start": start, "end": end}, **extra)
    if device:
        resource["device"] = {"reference": device}
    return resource


def daily(oid: str, value: float, when: str, device: str | None = "Device/phone", **extra: Any) -> dict[str, Any]:
    """A day's step total as a phone posts it."""
    resource = obs(oid, "41950-7", value, "/d", when, **extra)
    if device:
        resource["device"] = {"reference": device}
    return resource


def six_hourly(prefix: str, day: str, values: list[float], device: str = "Device/watch") -> list[dict[str, Any]]:
    return [interval(f"{prefix}{i}", value, f"{day}T{6 * i:02d}:00:00Z", f"{day}T{6 * i + 5:02d}:59:59Z", device)
            for i, value in enumerate(values)]


def steps_by_day(record: PatientRecord) -> dict[str, float]:
    return {str(day): reading.value for day, reading in record.steps.items()}


def test_units_are_normalised_and_unknown_units_skipped(knowledge: Knowledge) -> None:
    record = build_record("p", [
        obs("t1", "8310-5", 101.3, "[degF]"), obs("t2", "8310-5", 38.2, "Cel"), obs("t3", "8310-5", 311, "K"),
        obs("w1", "29463-7", 180, "[lb_av]"), obs("w2", "29463-7", 81000, "g"), obs("w3", "29463-7", 12, "stone"),
        obs("s1", "55411-3", 0.5, "h"), obs("s2", "55411-3", 1200, "s", "2026-11-11T08:00:00Z"),
        obs("s3", "55411-3", 3, "furlong"), obs("s4", "55411-3", 1 / 3, "h", "2026-11-12T08:00:00Z"),
    ], knowledge)
    assert [round(t.value, 1) for t in record.temperature] == [38.2, 38.5]  # one moment: in order of value
    assert [round(w.value, 2) for w in record.weight] == [81.0, 81.65]
    assert [s.value for s in record.sessions] == [30.0, 20.0, 20.0], "the same minutes, whatever the unit"
    assert any("Observation/t3" in s and "'K'" in s for s in record.skipped)
    assert any("Observation/w3" in s for s in record.skipped) and any("Observation/s3" in s for s in record.skipped)


def test_only_final_amended_corrected_count(knowledge: Knowledge) -> None:
    statuses = ["final", "amended", "corrected", "preliminary", "cancelled", "entered-in-error", "unknown"]
    record = build_record("p", [obs(f"p{i}", "72514-3", 5, "{score}", f"2026-11-1{i}T08:00:00Z", status=s)
                                for i, s in enumerate(statuses)], knowledge)
    assert len(record.pain) == 3
    assert len(record.skipped) == 4
    assert record.readings_set_aside() == [(STATUS_NOT_FINAL, 1)], "entered in error, cancelled: as if never recorded"


def test_one_steps_value_a_day_the_largest_daily_total_wins(knowledge: Knowledge) -> None:
    record = build_record("p", [
        obs("a", "41950-7", 5000, "/d", "2026-11-10T12:00:00Z"), obs("b", "41950-7", 3000, "/d", "2026-11-10T23:00:00Z"),
        obs("c", "41950-7", 4000, "{steps}", "2026-11-11T23:00:00Z"),
        obs("d", "55423-8", 7000, "/d", "2026-11-12T00:00:00Z",
            effectivePeriod={"start": "2026-11-12T00:00:00Z", "end": "2026-11-12T23:59:59Z"}),
        obs("e", "55423-8", 20000, "/d", "2026-11-13T00:00:00Z",
            effectivePeriod={"start": "2026-11-06T00:00:00Z", "end": "2026-11-13T00:00:00Z"}),
    ], knowledge)
    assert steps_by_day(record) == {"2026-11-10": 5000, "2026-11-11": 4000, "2026-11-12": 7000}
    assert [(s.source, s.reason) for s in record.set_aside] == [("Observation/e", LONGER_THAN_A_DAY)]


def test_peg_from_a_panel_or_a_mean_and_scores_out_of_range_skipped(knowledge: Knowledge) -> None:
    panel = obs("panel", "91148-7", 0, "")
    del panel["valueQuantity"]
    panel["component"] = [{"code": {"coding": [{"system": "http://loinc.org", "code": c}]},
                           "valueQuantity": {"value": v, "unit": "{score}"}}
                          for c, v in (("75893-8", 6), ("91145-3", 5), ("91146-1", 7))]
    record = build_record("p", [panel, obs("mean", "91147-9", 4.5, "{score}"), obs("bad", "72514-3", 14, "{score}")],
                          knowledge)
    assert sorted(r.value for r in record.peg) == [4.5, 6.0]
    assert any("outside 0-10" in s for s in record.skipped)


def test_conditions_hygiene_and_value_sets(knowledge: Knowledge) -> None:
    def condition(cid: str, code: str, clinical: str | None = "active", verification: str | None = None,
                  system: str = "http://snomed.info/sct") -> dict[str, Any]:
        resource = data.condition("p", cid, code)
        resource["code"]["coding"][0]["system"] = system
        if clinical is None:
            del resource["clinicalStatus"]
        else:
            resource["clinicalStatus"]["coding"][0]["code"] = clinical
        if verification:
            resource["verificationStatus"] = {"coding": [{"code": verification}]}
        return resource

    icd = "http://hl7.org/fhir/sid/icd-10-cm"
    record = build_record("p", [
        condition("c1", "192970008"), condition("c2", "363346000", verification="refuted"),
        condition("c3", "C50.911", clinical="resolved", system=icd),
        condition("c4", "C79.51", verification="entered-in-error", system=icd),
        condition("c5", "82423001"), condition("c6", "29857009", clinical="recurrence"),
        condition("c7", "C90.00", clinical=None, system=icd), condition("c8", "M4656", system=icd),
    ], knowledge)
    assert [(c.reference, c.value_sets, c.chronic_pain, sorted(c.history)) for c in record.conditions] == [
        ("Condition/c1", {"cauda-equina": "192970008"}, False, []),
        ("Condition/c3", {"malignancy": "C50.911"}, False, ["malignancy"]),  # resolved: the past
        ("Condition/c5", {"chronic-pain": "82423001"}, True, []),
        ("Condition/c6", {"cardiac-symptom": "29857009"}, False, []),
        ("Condition/c7", {"myeloma": "C90.00"}, False, []),  # no clinical status: counts
        ("Condition/c8", {"spinal-infection": "M4656"}, False, [])]  # ICD-10-CM without its dot matches by prefix
    assert record.chronic_pain_condition == "Condition/c5"


def test_icd10_chronic_pain_with_wildcard(knowledge: Knowledge) -> None:
    resource = data.condition("p", "c", "x")
    resource["code"] = {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "M54.50"}]}
    assert build_record("p", [resource], knowledge).chronic_pain_condition == "Condition/c"


def test_orders_and_their_dose(knowledge: Knowledge) -> None:
    current = data.exercise_order("p", "now", minutes=25, per_week=4)
    old = data.exercise_order("p", "old", status="completed", minutes=20, per_week=3)
    other = {**data.exercise_order("p", "mri"), "code": {"coding": [{"system": "http://snomed.info/sct",
                                                                     "code": "113091000"}]}}
    record = build_record("p", [current, old, other], knowledge)
    assert record.current_order is not None and record.current_order.dose is not None
    assert record.current_order.dose.words() == "25 min x 4/week"
    assert [o.reference for o in record.past_orders] == ["ServiceRequest/old"]
    daily = {"occurrenceTiming": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d", "duration": 0.5,
                                             "durationUnit": "h"}}}
    assert order_dose(daily) is not None and order_dose(daily).words() == "30 min x 7/week"
    assert order_dose({"occurrenceTiming": {"repeat": {"frequency": 2, "periodUnit": "wk"}}}) is None


def test_times_without_zone_or_only_a_date(knowledge: Knowledge) -> None:
    assert parse_time("2026-11-10") is not None and parse_time("2026-11-10").tzinfo is not None
    assert parse_time("2026-11-10T08:00:00").isoformat() == "2026-11-10T08:00:00+00:00"
    assert parse_time("2026-11-10T08:00:00+02:00").isoformat() == "2026-11-10T06:00:00+00:00"  # the same instant
    assert parse_time("yesterday") is None and parse_time(None) is None


def test_extensions_and_unknown_elements_are_tolerated(knowledge: Knowledge) -> None:
    resource = obs("x", "72514-3", 6, "{score}")
    resource["extension"] = [{"url": "http://ehr.example.org/fhir/StructureDefinition/device", "valueString": "app"}]
    resource["_status"] = {"extension": []}
    resource["note"] = [{"text": "after gardening"}]
    assert len(build_record("p", [resource], knowledge).pain) == 1


def test_an_active_weight_management_goal_is_read_as_an_explanation(knowledge: Knowledge) -> None:
    def goal(gid: str, status: str = "active", measure: str | None = None, described: str | None = None,
             ) -> dict[str, Any]:
        resource: dict[str, Any] = {"resourceType": "Goal", "id": gid, "lifecycleStatus": status,
                                    "subject": {"reference": "Patient/p"}, "description": {"text": "a goal"}}
        if measure:
            resource["target"] = [{"measure": {"coding": [{"system": "http://loinc.org", "code": measure}]}}]
        if described:
            resource["description"]["coding"] = [{"system": "http://snomed.info/sct", "code": described}]
        return resource

    record = build_record("p", [
        goal("weight", measure="29463-7"),                 # a body-weight target
        goal("bmi", measure="39156-5"),                    # a BMI target
        goal("coded", described="289169006"),              # "Exercising to lose weight"
        goal("done", status="completed", measure="29463-7"),  # no longer active
        goal("steps", measure="41950-7"),                  # a step quota says nothing of weight
        goal("mood", described="35489007"),                # a goal about something else
    ], knowledge)
    assert record.weight_goals == ["Goal/weight", "Goal/bmi", "Goal/coded"]


# ---------------------------------------------------------------- steps from phones and wearables


def test_a_watch_posting_six_hour_intervals_gives_the_day_s_sum(knowledge: Knowledge) -> None:
    hourly = [interval(f"h{hour}", 250, f"2026-11-11T{hour:02d}:00:00Z", f"2026-11-11T{hour:02d}:59:59Z")
              for hour in range(24)]
    record = build_record("p", six_hourly("w", "2026-11-10", [1500, 1500, 1500, 1500]) + hourly, knowledge)
    assert steps_by_day(record) == {"2026-11-10": 6000, "2026-11-11": 6000}
    assert record.steps[date(2026, 11, 10)].source == "Observation/w0"  # the day's first interval names it
    assert record.set_aside == []


def test_a_phone_and_a_watch_on_the_same_day_count_once_with_the_larger_total(knowledge: Knowledge) -> None:
    record = build_record("p", [
        daily("phone-10", 5800, "2026-11-10T23:00:00Z"),
        *six_hourly("watch-10-", "2026-11-10", [1200, 2500, 2000, 600]),  # 6,300
        daily("phone-11", 7100, "2026-11-11T23:00:00Z"),
        *six_hourly("watch-11-", "2026-11-11", [1000, 2000, 2000, 1000]),  # 6,000
    ], knowledge)
    assert steps_by_day(record) == {"2026-11-10": 6300, "2026-11-11": 7100}
    assert record.steps[date(2026, 11, 10)].source == "Observation/watch-10-0"
    assert record.steps[date(2026, 11, 11)].source == "Observation/phone-11"


def test_sources_are_the_device_else_the_performer_else_the_meta_source(knowledge: Knowledge) -> None:
    by_performer = [interval(f"a{i}", 1000, f"2026-11-10T{8 + i:02d}:00:00Z", f"2026-11-10T{8 + i:02d}:59:59Z",
                             device=None, performer=[{"display": "no reference"}, {"reference": "Patient/p"}])
                    for i in range(3)]  # one source: 3,000
    by_meta = [interval(f"b{i}", 1500, f"2026-11-10T{8 + i:02d}:00:00Z", f"2026-11-10T{8 + i:02d}:59:59Z",
                        device=None, meta={"source": "https://fit.example.org"}) for i in range(3)]  # 4,500
    record = build_record("p", by_performer + by_meta, knowledge)
    assert steps_by_day(record) == {"2026-11-10": 4500}
    # Readings that name no source are one shared source: their intervals add up.
    unnamed = [interval(f"u{i}", 800, f"2026-11-12T{8 + i:02d}:00:00Z", f"2026-11-12T{8 + i:02d}:59:59Z",
                        device=None) for i in range(3)]
    assert steps_by_day(build_record("p", unnamed, knowledge)) == {"2026-11-12": 2400}


def test_one_source_with_intervals_and_a_daily_total_gives_the_larger(knowledge: Knowledge) -> None:
    record = build_record("p", [
        *six_hourly("i10-", "2026-11-10", [1000, 3000, 2000]),  # 6,000 from the intervals
        daily("d10", 4500, "2026-11-10T14:00:00Z", device="Device/watch"),  # a running count sent at 14:00
        *six_hourly("i11-", "2026-11-11", [1000, 1000]),  # the watch was charging in the afternoon
        daily("d11", 7000, "2026-11-11T23:30:00Z", device="Device/watch"),
    ], knowledge)
    assert steps_by_day(record) == {"2026-11-10": 6000, "2026-11-11": 7000}


def test_an_interval_across_midnight_counts_on_the_day_it_starts(knowledge: Knowledge) -> None:
    record = build_record("p", [
        interval("late", 2000, "2026-11-10T22:00:00Z", "2026-11-11T02:00:00Z"),
        interval("morning", 3000, "2026-11-11T08:00:00Z", "2026-11-11T12:00:00Z"),
    ], knowledge)
    assert steps_by_day(record) == {"2026-11-10": 2000, "2026-11-11": 3000}


def test_the_same_interval_posted_twice_counts_once(knowledge: Knowledge) -> None:
    record = build_record("p", [*six_hourly("a", "2026-11-10", [1500, 1500]),
                                *six_hourly("again", "2026-11-10", [1500, 1500])], knowledge)
    assert steps_by_day(record) == {"2026-11-10": 3000}


def test_an_implausible_step_day_is_dropped_and_counted(knowledge: Knowledge) -> None:
    day_max = knowledge.values["steps_day_max"]
    record = build_record("p", [
        daily("glitch", 90000, "2026-11-10T23:00:00Z"),
        # Each interval is plausible; their sum for the day is not.
        *six_hourly("w", "2026-11-11", [day_max / 2, day_max / 2, 1000]),
        # A phone glitch does not hide what the watch counted that day.
        daily("phone", 90000, "2026-11-12T23:00:00Z"), *six_hourly("x", "2026-11-12", [3000, 3000]),
        daily("ok", 4000, "2026-11-13T23:00:00Z"),
        daily("negative", -50, "2026-11-14T23:00:00Z"),
    ], knowledge)
    assert steps_by_day(record) == {"2026-11-12": 6000, "2026-11-13": 4000}
    assert [s.source for s in record.set_aside] == ["Observation/negative", "Observation/glitch", "Observation/w0",
                                                    "Observation/phone"]
    assert record.set_aside_counts() == [(IMPLAUSIBLE, 4)]
    assert any("90,000 steps on 2026-11-10" in line for line in record.skipped)


# ---------------------------------------------------------------- dates, sessions, what is set aside


def test_a_reading_dated_after_now_is_set_aside(knowledge: Knowledge) -> None:
    now = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    resources = [obs("past", "72514-3", 4, "{score}", "2026-11-20T08:00:00Z"),
                 obs("future", "72514-3", 7, "{score}", "2026-11-21T08:00:00Z"),
                 daily("tomorrow", 9000, "2026-11-21T23:00:00Z"),
                 interval("running", 800, "2026-11-20T06:00:00Z", "2026-11-20T12:00:00Z")]  # not over yet
    record = build_record("p", resources, knowledge, now)
    assert [r.value for r in record.pain] == [4.0] and record.steps == {}
    assert [(s.source, s.reason) for s in record.set_aside] == [
        ("Observation/future", DATED_IN_FUTURE), ("Observation/tomorrow", DATED_IN_FUTURE),
        ("Observation/running", DATED_IN_FUTURE)]
    assert len(build_record("p", resources, knowledge).pain) == 2  # without a moment of evaluation nothing is


def test_evaluation_sets_aside_readings_after_its_moment(engine: RuleEngine) -> None:
    resources = [obs("future", "72514-3", 7, "{score}", (data.NOW + timedelta(days=1)).isoformat())]
    outcome = evaluate_patient(engine, "pacing-review", "patient-view", "h", "p", resources, data.NOW)
    assert outcome.record.pain == []
    assert outcome.record.set_aside_counts() == [(DATED_IN_FUTURE, 1)]


def test_a_session_without_a_duration_still_counts_as_a_session(knowledge: Knowledge) -> None:
    untimed = obs("untimed", "55411-3", 0, "min", "2026-11-10T18:00:00Z", device={"reference": "Device/watch"})
    del untimed["valueQuantity"]
    no_number = obs("no-number", "55411-3", 0, "min", "2026-11-11T18:00:00Z")
    no_number["valueQuantity"] = {"unit": "min"}
    no_unit = obs("no-unit", "55411-3", 30, "")
    del no_unit["valueQuantity"]["unit"], no_unit["valueQuantity"]["code"]
    record = build_record("p", [untimed, no_number, no_unit, obs("long", "55411-3", 6, "h"),
                                obs("walk", "55411-3", 45, "min")], knowledge)
    assert record.untimed_sessions == [Reading(datetime(2026, 11, 10, 18, tzinfo=UTC), 0.0, "Observation/untimed"),
                                       Reading(datetime(2026, 11, 11, 18, tzinfo=UTC), 0.0, "Observation/no-number")]
    assert [s.value for s in record.sessions] == [45.0]
    assert [(s.source, s.reason) for s in record.set_aside] == [("Observation/no-unit", UNIT_NOT_UNDERSTOOD),
                                                                ("Observation/long", IMPLAUSIBLE)]


def test_set_aside_items_are_counted_by_reason_and_listed_for_the_trace(knowledge: Knowledge) -> None:
    record = build_record("p", [
        obs("k", "8310-5", 311, "K"), obs("st", "29463-7", 12, "stone"),
        obs("pre1", "72514-3", 5, "{score}", status="preliminary"), obs("pre2", "72514-3", 5, "{score}",
                                                                         status="entered-in-error"),
        obs("hot", "8310-5", 50, "Cel"), obs("late", "72514-3", 3, "{score}", "2026-12-01T08:00:00Z"),
    ], knowledge, datetime(2026, 11, 20, tzinfo=UTC))
    assert record.set_aside_counts() == [(UNIT_NOT_UNDERSTOOD, 2), (DATED_IN_FUTURE, 1), (IGNORED, 1),
                                         (IMPLAUSIBLE, 1), (STATUS_NOT_FINAL, 1)]
    assert record.readings_set_aside() == [(UNIT_NOT_UNDERSTOOD, 2), (DATED_IN_FUTURE, 1), (IMPLAUSIBLE, 1),
                                           (STATUS_NOT_FINAL, 1)], "what is as if never recorded is not reported"
    assert "Observation/k: unit 'K' not understood for a temperature" in record.skipped
    assert "Observation/pre1: status 'preliminary' does not count for this reading" in record.skipped
    assert PatientRecord("p").set_aside_counts() == []


def test_a_set_aside_reason_outside_the_fixed_categories_is_refused() -> None:
    with pytest.raises(ValueError, match="reason"):
        SetAside("Observation/x", "something", "felt wrong")


def test_an_out_of_range_blood_pressure_is_reported(knowledge: Knowledge) -> None:
    reading = obs("bp", "8480-6", 900, "mm[Hg]")
    record = build_record("p", [reading], knowledge)
    assert record.blood_pressure == [] and record.set_aside_counts() == [(IMPLAUSIBLE, 1)]
