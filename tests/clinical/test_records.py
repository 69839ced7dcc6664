"""FHIR -> records: the data hygiene of docs/clinical.md."""

from __future__ import annotations

from typing import Any

from cds.engine import Knowledge
from cds.fhir.readers import build_record, order_dose, parse_time
from tests.support import data


def obs(oid: str, code: str, value: float, unit: str, when: str = "2026-11-10T08:00:00Z", status: str = "final",
        **extra: Any) -> dict[str, Any]:
    resource = data.observation("p", oid, code, value, unit, data.NOW)
    resource.update({"status": status, "effectiveDateTime": when, **extra})
    return resource


def test_units_are_normalised_and_unknown_units_skipped(knowledge: Knowledge) -> None:
    record = build_record("p", [
        obs("t1", "8310-5", 101.3, "[degF]"), obs("t2", "8310-5", 38.2, "Cel"), obs("t3", "8310-5", 311, "K"),
        obs("w1", "29463-7", 180, "[lb_av]"), obs("w2", "29463-7", 81000, "g"), obs("w3", "29463-7", 12, "stone"),
        obs("s1", "55411-3", 0.5, "h"), obs("s2", "55411-3", 1200, "s"), obs("s3", "55411-3", 3, "furlong"),
    ], knowledge)
    assert [round(t.value, 1) for t in record.temperature] == [38.5, 38.2]
    assert [round(w.value, 2) for w in record.weight] == [81.65, 81.0]
    assert [s.value for s in record.sessions] == [30.0, 20.0]
    assert any("Observation/t3" in s and "'K'" in s for s in record.skipped)
    assert any("Observation/w3" in s for s in record.skipped) and any("Observation/s3" in s for s in record.skipped)


def test_only_final_amended_corrected_count(knowledge: Knowledge) -> None:
    statuses = ["final", "amended", "corrected", "preliminary", "cancelled", "entered-in-error", "unknown"]
    record = build_record("p", [obs(f"p{i}", "72514-3", 5, "{score}", status=s) for i, s in enumerate(statuses)],
                          knowledge)
    assert len(record.pain) == 3
    assert len(record.skipped) == 4


def test_one_steps_value_a_day_the_latest_wins(knowledge: Knowledge) -> None:
    record = build_record("p", [
        obs("a", "41950-7", 3000, "/d", "2026-11-10T12:00:00Z"), obs("b", "41950-7", 5000, "/d", "2026-11-10T23:00:00Z"),
        obs("c", "41950-7", 4000, "{steps}", "2026-11-11T23:00:00Z"),
        obs("d", "55423-8", 7000, "/d", "2026-11-12T00:00:00Z",
            effectivePeriod={"start": "2026-11-12T00:00:00Z", "end": "2026-11-12T23:59:59Z"}),
        obs("e", "55423-8", 20000, "/d", "2026-11-13T00:00:00Z",
            effectivePeriod={"start": "2026-11-06T00:00:00Z", "end": "2026-11-13T00:00:00Z"}),
    ], knowledge)
    assert {str(d): r.value for d, r in record.steps.items()} == {
        "2026-11-10": 5000, "2026-11-11": 4000, "2026-11-12": 7000}


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
    assert [(c.reference, c.value_sets, c.chronic_pain) for c in record.conditions] == [
        ("Condition/c1", {"cauda-equina": "192970008"}, False), ("Condition/c5", {"chronic-pain": "82423001"}, True),
        ("Condition/c6", {"cardiac-symptom": "29857009"}, False),
        ("Condition/c7", {"malignancy": "C90.00"}, False),  # no clinical status: counts
        ("Condition/c8", {"spinal-infection": "M4656"}, False)]  # ICD-10-CM without its dot matches by prefix
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
    assert parse_time("2026-11-10T08:00:00+02:00").isoformat() == "2026-11-10T08:00:00+02:00"
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
