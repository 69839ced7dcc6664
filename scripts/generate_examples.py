"""Write the end-to-end examples of fhir_examples/<name>/: request.json, a complete CDS Hooks
call with weeks of realistic FHIR R4 data as of NOW (deterministic: the same script writes the same files), and
with --answers, response.json and evaluate.txt: the answer the service gives to it now, and what `pacing-cds
evaluate` prints for it (the rule set version left out of both).
expected.json, the answer's intent (codes, dose, what it shows), is written by hand, and the rule that owns
the example names it in its examples: (rules/<code>/rule.yaml) before --answers, which loads the rules with
their examples and stops on an example no rule owns.

    .venv/bin/python scripts/generate_examples.py             # requests
    .venv/bin/python scripts/generate_examples.py --answers   # and record the answers, after a reviewed change

`make record` runs it with --answers between `pacing-cds rules check` and scripts/update_readme.py: every recorded
output in one command.
"""

from __future__ import annotations

import json
import random
import sys
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "rules"
EXAMPLES_DIR = ROOT / "fhir_examples"
NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
LOINC, SNOMED, UCUM = "http://loinc.org", "http://snomed.info/sct", "http://unitsofmeasure.org"
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"


def at(days_ago: int, hour: int, minute: int = 0) -> str:
    """A moment `days_ago` days before NOW at hour:minute; on the day of NOW, no later than an hour before it (a
    reading from the future would be set aside)."""
    moment = (NOW - timedelta(days=days_ago)).replace(hour=hour, minute=minute, second=0)
    moment = min(moment, NOW - timedelta(hours=1)) if days_ago == 0 else moment
    return moment.isoformat().replace("+00:00", "Z")


class Patient:
    """Accumulates one patient's resources by prefetch key."""

    def __init__(self, pid: str, seed: int) -> None:
        self.pid = pid
        self.rng = random.Random(seed)
        self.keys: dict[str, list[dict[str, Any]]] = {k: [] for k in (
            "conditions", "pain", "activity", "vitals", "weight", "step-goals", "exercise-orders", "careplans")}
        self.count = 0
        self.failed: set[str] = set()  # keys whose request failed: prefetched as an OperationOutcome
        self.patient = {"resourceType": "Patient", "id": pid, "active": True,
                        "name": [{"family": "Example", "given": [pid.split("-")[0].capitalize()]}],
                        "gender": "female", "birthDate": "1968-04-12"}
        self.condition("chronic-pain", "82423001", "Chronic pain", recorded="2025-02-01")

    def _id(self, prefix: str) -> str:
        self.count += 1
        return f"{self.pid}-{prefix}-{self.count}"

    def obs(self, key: str, code: str, display: str, when: str, value: float | None = None, unit: str = "",
            category: str = "survey", **extra: Any) -> dict[str, Any]:
        resource: dict[str, Any] = {
            "resourceType": "Observation", "id": self._id(code.replace("-", "")), "status": "final",
            "category": [{"coding": [{"system": OBS_CATEGORY, "code": category}]}],
            "code": {"coding": [{"system": LOINC, "code": code, "display": display}]},
            "subject": {"reference": f"Patient/{self.pid}"}, "effectiveDateTime": when, **extra}
        if value is not None:
            resource["valueQuantity"] = {"value": value, "unit": unit, "system": UCUM, "code": unit}
        self.keys[key].append(resource)
        return resource

    def pain(self, days: range, low: int, high: int, hour: int = 20) -> None:
        """Daily NRS: mostly `low`, `high` on one day in five."""
        for d in days:
            self.obs("pain", "72514-3", "Pain severity - 0-10 verbal numeric rating [Score] - Reported",
                     at(d, hour), high if d % 5 == 0 else low, "{score}")

    def peg(self, days: range, mean: float) -> None:
        for d in days:
            items = [round(min(10, max(0, mean + self.rng.uniform(-0.4, 0.4)))) for _ in range(3)]
            components = [{"code": {"coding": [{"system": LOINC, "code": c}]},
                           "valueQuantity": {"value": v, "unit": "{score}", "system": UCUM, "code": "{score}"}}
                          for c, v in zip(("75893-8", "91145-3", "91146-1"), items)]
            self.obs("pain", "91148-7", "PEG 3-item pain scale", at(d, 19), component=components)

    def sessions(self, days: range, minutes: Callable[[int], float], weekdays: tuple[int, ...] = (1, 3, 5)) -> None:
        for d in days:
            if d % 7 in weekdays:
                self.obs("activity", "55411-3", "Exercise duration", at(d, 7, 30), round(minutes(d)), "min",
                         category="activity")

    def steps(self, days: range, count: Callable[[int], float]) -> None:
        for d in days:
            self.obs("activity", "41950-7", "Number of steps in 24 hour Measured", at(d, 23, 55),
                     round(count(d)), "/d", category="activity")

    def interval_steps(self, days: range, count: Callable[[int], float], device: str,
                       hours: tuple[int, ...] = (0, 6, 12, 18)) -> None:
        """A wearable posting steps per interval (LOINC 55423-8 with an effectivePeriod), from one device."""
        span = 24 // len(hours)
        for d in days:
            for hour in hours:
                resource = self.obs("activity", "55423-8", "Number of steps in unspecified time Pedometer",
                                    at(d, hour), round(count(d) / len(hours)), "{steps}", category="activity",
                                    device={"reference": device})
                del resource["effectiveDateTime"]
                resource["effectivePeriod"] = {"start": at(d, hour), "end": at(d, hour + span - 1, 59)}

    def untimed_sessions(self, days: range, weekdays: tuple[int, ...] = (1, 3, 5)) -> None:
        """Sessions logged by an app that records that a session happened, not how long it was."""
        for d in days:
            if d % 7 in weekdays:
                self.obs("activity", "55411-3", "Exercise duration", at(d, 7, 30), category="activity",
                         dataAbsentReason={"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                                                 "data-absent-reason", "code": "unknown"}]})

    def blood_pressure(self, days_ago: int, systolic: int, diastolic: int, **extra: Any) -> None:
        components = [{"code": {"coding": [{"system": LOINC, "code": c}]},
                       "valueQuantity": {"value": v, "unit": "mm[Hg]", "system": UCUM, "code": "mm[Hg]"}}
                      for c, v in (("8480-6", systolic), ("8462-4", diastolic))]
        self.obs("vitals", "85354-9", "Blood pressure panel", at(days_ago, 10), category="vital-signs",
                 component=components, **extra)

    def condition(self, name: str, code: str, display: str, recorded: str | None, verification: str = "confirmed",
                  clinical: str = "active", system: str = SNOMED) -> None:
        resource = {
            "resourceType": "Condition", "id": f"{self.pid}-{name}",
            "clinicalStatus": {"coding": [{"system": CLINICAL, "code": clinical}]},
            "verificationStatus": {"coding": [{"system": VERIFICATION, "code": verification}]},
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category",
                                      "code": "problem-list-item"}]}],
            "code": {"coding": [{"system": system, "code": code, "display": display}]},
            "subject": {"reference": f"Patient/{self.pid}"}, "recordedDate": recorded}
        if recorded is None:
            del resource["recordedDate"]
        self.keys["conditions"].append(resource)

    def order(self, name: str, minutes: int, per_week: int, authored: str, status: str = "active"
              ) -> dict[str, Any]:
        resource = exercise_request(self.pid, f"{self.pid}-{name}", minutes, per_week, authored, status)
        if status != "draft":
            self.keys["exercise-orders"].append(resource)
        return resource

    def step_goal(self, steps: int, start: str = "2026-10-01") -> None:
        self.keys["step-goals"].append({
            "resourceType": "Goal", "id": f"{self.pid}-goal", "lifecycleStatus": "active", "startDate": start,
            "meta": {"profile": ["http://hl7.org/fhir/us/physical-activity/StructureDefinition/pa-goal"]},
            "description": {"text": f"{steps} steps a day"}, "subject": {"reference": f"Patient/{self.pid}"},
            "target": [{"measure": {"coding": [{"system": LOINC, "code": "41950-7"}]},
                        "detailQuantity": {"value": steps, "unit": "steps/day", "system": UCUM, "code": "/d"}}]})

    def prefetch(self) -> dict[str, Any]:
        out: dict[str, Any] = {"patient": self.patient}
        for key, resources in self.keys.items():
            if key in self.failed:
                out[key] = {"resourceType": "OperationOutcome", "issue": [
                    {"severity": "error", "code": "timeout", "diagnostics": "the Goal search timed out"}]}
                continue
            ordered = sorted(resources, key=lambda r: r.get("effectiveDateTime", ""), reverse=True)
            out[key] = {"resourceType": "Bundle", "type": "searchset", "total": len(ordered),
                        "entry": [{"fullUrl": f"urn:uuid:{r['id']}", "resource": r} for r in ordered]}
        return out


def exercise_request(pid: str, rid: str, minutes: int, per_week: int, authored: str, status: str) -> dict[str, Any]:
    return {
        "resourceType": "ServiceRequest", "id": rid, "status": status, "intent": "order",
        "meta": {"profile": ["http://hl7.org/fhir/us/physical-activity/StructureDefinition/pa-servicerequest"]},
        "code": {"coding": [{"system": SNOMED, "code": "229065009", "display": "Exercise therapy"}]},
        "subject": {"reference": f"Patient/{pid}"}, "authoredOn": authored,
        "performer": [{"reference": f"Patient/{pid}"}],
        "reasonReference": [{"reference": f"Condition/{pid}-chronic-pain"}],
        "occurrenceTiming": {"repeat": {"frequency": per_week, "period": 1, "periodUnit": "wk",
                                        "duration": minutes, "durationUnit": "min"}},
        "patientInstruction": f"Walk {minutes} minutes, {per_week} times a week."}


# ---------------------------------------------------------------- scenarios


def on_plan(p: Patient, minutes: int, per_week: int, weekdays: tuple[int, ...] = (1, 3, 5)) -> None:
    """An active order followed for five weeks, with stable pain."""
    p.order("order", minutes, per_week, "2026-10-01")
    p.sessions(range(0, 35), lambda d: minutes + p.rng.choice((0, 0, 1)), weekdays)
    p.pain(range(0, 28), 4, 5)


def progress_walking(p: Patient) -> None:
    on_plan(p, 20, 3)


def progress_add_session(p: Patient) -> None:
    on_plan(p, 30, 3)


def goal_met(p: Patient) -> None:
    on_plan(p, 30, 5, weekdays=(0, 1, 2, 4, 5))


def hold_low_adherence(p: Patient) -> None:
    p.order("order", 20, 3, "2026-10-01")
    p.sessions(range(7, 35), lambda d: 20)
    p.sessions(range(0, 7), lambda d: 20, weekdays=(3,))
    p.pain(range(0, 28), 4, 5)


def step_back_flare(p: Patient) -> None:
    p.order("order", 25, 4, "2026-10-01")
    p.sessions(range(0, 35), lambda d: 25, weekdays=(0, 2, 4, 6))
    p.pain(range(6, 28), 3, 4)
    p.pain(range(0, 5), 6, 7)


def re_baseline(p: Patient) -> None:
    p.order("order", 25, 3, "2026-10-01")
    p.sessions(range(0, 35), lambda d: 25)
    p.pain(range(5, 14), 3, 4)
    p.pain(range(21, 28), 3, 4)
    p.pain(range(0, 5), 6, 7, hour=8)
    p.pain(range(14, 21), 6, 7, hour=8)


def establish_baseline(p: Patient) -> None:
    p.steps(range(0, 2), lambda d: 4200 + p.rng.randint(-300, 300))
    p.pain(range(0, 2), 5, 6)


def start_steps(p: Patient) -> None:
    p.steps(range(0, 9), lambda d: 6000 + (d % 3 - 1) * 200)
    p.pain(range(0, 9), 4, 5)


def progress_steps(p: Patient) -> None:
    p.step_goal(5000)
    p.steps(range(0, 30), lambda d: 5600 + p.rng.randint(-300, 300))
    p.pain(range(0, 28), 4, 5)


def data_gap(p: Patient) -> None:
    p.order("order", 20, 3, "2026-09-01")
    p.sessions(range(20, 50), lambda d: 20)
    p.pain(range(18, 40), 4, 5)


def red_flag_on_progress_week(p: Patient) -> None:
    on_plan(p, 20, 3)
    p.blood_pressure(3, 186, 96)
    p.blood_pressure(40, 138, 84)


def refuted_red_flag(p: Patient) -> None:
    on_plan(p, 20, 3)
    p.condition("fracture", "417746004", "Traumatic injury", "2026-11-10", verification="refuted")
    p.condition("cancer", "363346000", "Malignant neoplastic disease", "2026-11-12",
                verification="entered-in-error")
    p.condition("old-fever", "386661006", "Fever", "2026-06-01", clinical="resolved")


def pounds_and_fahrenheit(p: Patient) -> None:
    on_plan(p, 20, 3)
    for days_ago, pounds in ((300, 181.0), (200, 178.5), (90, 172.0), (5, 168.2)):
        p.obs("weight", "29463-7", "Body weight", at(days_ago, 9), pounds, "[lb_av]", category="vital-signs")
    p.obs("vitals", "8310-5", "Body temperature", at(2, 9), 98.9, "[degF]", category="vital-signs")
    p.obs("vitals", "8310-5", "Body temperature", at(1, 9), 310.2, "K", category="vital-signs")


def peg_only(p: Patient) -> None:
    p.order("order", 20, 3, "2026-10-01")
    p.sessions(range(0, 35), lambda d: 20)
    p.peg(range(7, 28, 3), 4.0)
    p.peg(range(1, 2), 5.7)


def boom_bust(p: Patient) -> None:
    p.step_goal(6000)
    p.steps(range(14, 30), lambda d: 6000 + p.rng.randint(-300, 300))
    p.steps(range(0, 14), lambda d: (11500 if d % 3 == 2 else 2200 if d % 3 == 1 else 5800)
            + p.rng.randint(-200, 200))
    p.pain(range(0, 28), 4, 5)


def inactivity(p: Patient) -> None:
    """The planned sessions done, and otherwise barely moving: a phone counts about 2,400 steps a day."""
    on_plan(p, 20, 3)
    p.steps(range(0, 30), lambda d: 2400 + p.rng.randint(-150, 150))


ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"


def cauda_equina_undated(p: Patient) -> None:
    on_plan(p, 20, 3)
    p.condition("ces", "192970008", "Cauda equina syndrome", None)


def breast_cancer_coded_specifically(p: Patient) -> None:
    on_plan(p, 20, 3)
    p.condition("cancer", "C50.911", "Malignant neoplasm of unspecified site of right female breast",
                "2026-11-19", system=ICD10CM)


def order_metastasis(p: Patient) -> None:
    on_plan(p, 20, 3)
    p.condition("metastasis", "C79.51", "Secondary malignant neoplasm of bone", "2024-03-02", system=ICD10CM)


def preliminary_blood_pressure(p: Patient) -> None:
    on_plan(p, 20, 3)
    p.blood_pressure(1, 212, 124, status="preliminary")
    p.blood_pressure(30, 132, 82)


def weight_loss_explained(p: Patient) -> None:
    on_plan(p, 20, 3)
    p.condition("obesity", "E66.01", "Morbid (severe) obesity due to excess calories", "2026-03-01", system=ICD10CM)
    for days_ago, kilograms in ((200, 112.0), (100, 106.5), (3, 103.0)):
        p.obs("weight", "29463-7", "Body weight", at(days_ago, 9), kilograms, "kg", category="vital-signs")


def weight_management_goal(p: Patient) -> None:
    on_plan(p, 20, 3)
    p.keys["step-goals"].append({
        "resourceType": "Goal", "id": f"{p.pid}-weight-goal", "lifecycleStatus": "active",
        "description": {"coding": [{"system": SNOMED, "code": "289169006", "display": "Exercising to lose weight"}],
                        "text": "Lose 10 kg this year"},
        "subject": {"reference": f"Patient/{p.pid}"}, "startDate": "2026-04-01",
        "target": [{"measure": {"coding": [{"system": LOINC, "code": "29463-7", "display": "Body weight"}]},
                    "detailQuantity": {"value": 95, "unit": "kg", "system": UCUM, "code": "kg"},
                    "dueDate": "2027-04-01"}]})
    for days_ago, kilograms in ((200, 105.0), (100, 101.5), (3, 97.5)):
        p.obs("weight", "29463-7", "Body weight", at(days_ago, 9), kilograms, "kg", category="vital-signs")


def pregnancy_on_progress_week(p: Patient) -> None:
    on_plan(p, 20, 3)
    p.condition("pregnancy", "77386006", "Pregnancy", "2026-09-14")
    p.blood_pressure(2, 118, 74)


def pregnancy_high_blood_pressure(p: Patient) -> None:
    pregnancy_on_progress_week(p)
    p.blood_pressure(1, 146, 94)


def me_cfs(p: Patient) -> None:
    on_plan(p, 20, 3)
    p.condition("mecfs", "G93.32", "Myalgic encephalomyelitis/chronic fatigue syndrome", "2025-05-04",
                system=ICD10CM)


def axial_spondyloarthritis(p: Patient) -> None:
    on_plan(p, 20, 3)
    p.condition("axspa", "M45.6", "Ankylosing spondylitis lumbar region", "2019-06-11", system=ICD10CM)
    p.condition("incontinence", "R32", "Unspecified urinary incontinence", "2026-11-02", system=ICD10CM)


# ---------------------------------------------------------------- shaped like real device and EHR data


def progressed_yesterday(p: Patient) -> None:
    p.order("earlier", 20, 3, "2026-10-01", status="completed")
    p.order("order", 22, 3, at(1, 10))
    p.sessions(range(0, 35), lambda d: 20 + p.rng.choice((0, 0, 1)))
    p.pain(range(0, 28), 4, 5)


def stepped_back_3_days_ago(p: Patient) -> None:
    earlier = p.order("earlier", 25, 4, "2026-10-01", status="revoked")
    current = p.order("order", 20, 4, at(3, 10))
    current["replaces"] = [{"reference": f"ServiceRequest/{earlier['id']}"}]
    p.sessions(range(0, 35), lambda d: 25 if d > 3 else 20, (0, 2, 4, 6))
    p.pain(range(0, 28), 4, 5)


def overachiever(p: Patient) -> None:
    p.steps(range(0, 14), lambda d: 12600 + p.rng.randint(-400, 400))
    p.pain(range(0, 28), 3, 4)


def no_pain_scores(p: Patient) -> None:
    p.order("order", 20, 3, "2026-10-01")
    p.sessions(range(0, 35), lambda d: 20 + p.rng.choice((0, 0, 1)))


def wearable_intervals(p: Patient) -> None:
    p.step_goal(5000)
    p.interval_steps(range(0, 30), lambda d: 5200 + p.rng.randint(-200, 200), "Device/watch-1")
    p.pain(range(0, 28), 4, 5)


def two_devices(p: Patient) -> None:
    p.step_goal(5000)
    p.steps(range(0, 30), lambda d: 5000 + p.rng.randint(-200, 200))
    p.interval_steps(range(0, 30), lambda d: 5400 + p.rng.randint(-200, 200), "Device/watch-1")
    p.pain(range(0, 28), 4, 5)


def outlier_day(p: Patient) -> None:
    p.step_goal(5000)
    p.steps(range(0, 30), lambda d: 90000 if d == 2 else 5300 + p.rng.randint(-200, 200))
    p.pain(range(0, 28), 4, 5)


def sessions_without_duration(p: Patient) -> None:
    p.order("order", 20, 3, "2026-10-01")
    p.untimed_sessions(range(0, 35))
    p.pain(range(0, 28), 4, 5)


def order_in_a_flare(p: Patient) -> None:
    """A flare this week (NRS 6-7 against 3-4), and a draft that renews the same dose."""
    p.order("order", 20, 3, "2026-10-01")
    p.sessions(range(0, 35), lambda d: 20)
    p.pain(range(7, 28), 3, 4)
    p.pain(range(0, 7), 6, 7)


def sessions_in_kilocalories(p: Patient) -> None:
    """An app that logs each session's energy (kcal) under the duration code: nothing of the week is usable."""
    p.order("order", 20, 3, "2026-10-01")
    for d in range(0, 35):
        if d % 7 in (1, 3, 5):
            p.obs("activity", "55411-3", "Exercise duration", at(d, 7, 30), 140, "kcal", category="activity")
    p.pain(range(0, 28), 4, 5)


def goal_unreadable(p: Patient) -> None:
    p.steps(range(0, 30), lambda d: 5200 + p.rng.randint(-200, 200))
    p.pain(range(0, 28), 4, 5)
    p.failed.add("step-goals")  # the EHR's search failed, and there is no FHIR server to ask again


# ---------------------------------------------------------------- version 2.1: FHIR's own fields, absent data, once


def no_birth_date(p: Patient) -> None:
    """US Core allows a Patient without birthDate: taken for an adult, and a lung cancer recorded last week."""
    on_plan(p, 20, 3)
    del p.patient["birthDate"]
    p.condition("cancer", "C34.90", "Malignant neoplasm of unspecified part of unspecified bronchus or lung",
                "2026-11-12", system=ICD10CM)


def metastasis_in_remission(p: Patient) -> None:
    """Bone metastasis in remission: bone at risk stays at risk, whatever the clinical status."""
    on_plan(p, 20, 3)
    p.condition("metastasis", "94222008", "Secondary malignant neoplasm of bone", "2024-06-12", clinical="remission")


def basal_cell_carcinoma(p: Patient) -> None:
    """A basal cell carcinoma of the skin recorded this month: not a malignancy red flag."""
    on_plan(p, 20, 3)
    p.condition("bcc", "C44.311", "Basal cell carcinoma of skin of nose", "2026-11-06", system=ICD10CM)


def fracture_resolved_without_date(p: Patient) -> None:
    """A vertebral fracture marked resolved three weeks after it was recorded, with no abatement date."""
    on_plan(p, 20, 3)
    p.condition("fracture", "S32.010A", "Wedge compression fracture of first lumbar vertebra, initial encounter",
                "2026-10-30", clinical="resolved", system=ICD10CM)


def severe_blood_pressure_then_normal(p: Patient) -> None:
    """186/112 three days ago, one normal reading since: not yet cleared."""
    on_plan(p, 20, 3)
    p.blood_pressure(40, 134, 84)
    p.blood_pressure(3, 186, 112)
    p.blood_pressure(1, 128, 82)


def two_totals_one_day(p: Patient) -> None:
    """A phone that re-sends a partial count late at night, with no device named: the day's largest total stands."""
    p.step_goal(5000)
    p.steps(range(0, 30), lambda d: 5600 + p.rng.randint(-200, 200))
    for d in (1, 3, 5):
        p.obs("activity", "41950-7", "Number of steps in 24 hour Measured", at(d, 23, 58), 1200, "/d",
              category="activity")
    p.pain(range(0, 28), 4, 5)


def session_sent_three_times(p: Patient) -> None:
    """One session of three this week, sent three times under three ids: it counts once, so the dose holds."""
    p.order("order", 20, 3, "2026-10-01")
    p.sessions(range(7, 35), lambda d: 20)
    for _ in range(3):
        p.obs("activity", "55411-3", "Exercise duration", at(3, 7, 30), 20, "min", category="activity")
    p.pain(range(0, 28), 4, 5)


def three_durations_one_session(p: Patient) -> None:
    """Each session sent as three exercise durations from the same start (total, moderate, vigorous), the Physical
    Activity IG's shape, with no panel: one session of the longest."""
    p.order("order", 20, 3, "2026-10-01")
    for d in range(0, 35):
        if d % 7 in (1, 3, 5):
            for minutes in (20, 12, 8):
                p.obs("activity", "55411-3", "Exercise duration", at(d, 7, 30), minutes, "min", category="activity")
    p.pain(range(0, 28), 4, 5)


def twice_the_plan(p: Patient) -> None:
    """Four steady weeks of 20 min x 3, then twice the plan this week: one dose card (hold), beside the warning."""
    p.order("order", 20, 3, "2026-10-01")
    p.sessions(range(7, 35), lambda d: 20)
    p.sessions(range(0, 7), lambda d: 40)
    p.pain(range(0, 28), 4, 5)


def step_goal_without_quota(p: Patient) -> None:
    """A step goal in force whose target has no quantity and whose description names no number."""
    p.step_goal(5000)
    goal = p.keys["step-goals"][0]
    del goal["target"][0]["detailQuantity"]
    goal["description"] = {"text": "More steps each day"}
    p.steps(range(0, 30), lambda d: 5300 + p.rng.randint(-200, 200))
    p.pain(range(0, 28), 4, 5)


def goal_search_failed_minutes(p: Patient) -> None:
    """The Goal search failed, but this patient's dose is an exercise order: the goals are not needed, not named."""
    on_plan(p, 20, 3)
    p.failed.add("step-goals")


# Counterexamples the invariant suite (tests/invariants) found, kept as examples with their expected answers.


def times_with_offsets(p: Patient) -> None:
    """The progress-walking week with every moment written in the clinic's or the device's own UTC offset: the same
    instants, the same answer."""
    on_plan(p, 20, 3)
    for index, resource in enumerate(r for key in ("pain", "activity") for r in p.keys[key]):
        offset = timedelta(hours=(9, -5, 5, -8)[index % 4], minutes=30 if index % 4 == 2 else 0)
        moment = datetime.fromisoformat(resource["effectiveDateTime"].replace("Z", "+00:00"))
        resource["effectiveDateTime"] = moment.astimezone(timezone(offset)).isoformat()


def goal_accepted(p: Patient) -> None:
    """A step goal the patient accepted (lifecycleStatus accepted): a goal in force, as an active one is."""
    progress_steps(p)
    p.keys["step-goals"][0]["lifecycleStatus"] = "accepted"


def pain_scores_sent_twice(p: Patient) -> None:
    """Every pain score sent twice by an interface engine (two ids, the same score at the same moment): counted once."""
    on_plan(p, 20, 3)
    for resource in list(p.keys["pain"]):
        copy = json.loads(json.dumps(resource))
        copy["id"] = resource["id"] + "-relayed"
        copy["meta"] = {"source": "urn:example:interface-engine"}
        p.keys["pain"].append(copy)


def order_context(p: Patient, hook: str, draft: dict[str, Any]) -> dict[str, Any]:
    context: dict[str, Any] = {"userId": "PractitionerRole/pcp-1", "patientId": p.pid, "encounterId": "enc-1",
                               "draftOrders": {"resourceType": "Bundle", "type": "collection",
                                               "entry": [{"resource": draft}]}}
    if hook == "order-select":
        context["selections"] = [f"ServiceRequest/{draft['id']}"]
    return context


SCENARIOS: list[tuple[str, str, Callable[[Patient], Any] | None]] = [  # name, service, builder
    ("progress-walking", "pacing-review", progress_walking),
    ("progress-add-session", "pacing-review", progress_add_session),
    ("goal-met", "pacing-review", goal_met),
    ("hold-low-adherence", "pacing-review", hold_low_adherence),
    ("step-back-flare", "pacing-review", step_back_flare),
    ("re-baseline", "pacing-review", re_baseline),
    ("establish-baseline", "pacing-review", establish_baseline),
    ("start-steps", "pacing-review", start_steps),
    ("progress-steps", "pacing-review", progress_steps),
    ("data-gap", "pacing-review", data_gap),
    ("high-blood-pressure-on-progress-week", "pacing-review", red_flag_on_progress_week),
    ("refuted-red-flag", "pacing-review", refuted_red_flag),
    ("pounds-and-fahrenheit", "pacing-review", pounds_and_fahrenheit),
    ("peg-only", "pacing-review", peg_only),
    ("boom-bust", "pacing-review", boom_bust),
    ("inactivity", "pacing-review", inactivity),
    ("order-dose-jump", "exercise-order-select", None),
    ("order-fits", "exercise-order-sign", None),
    ("order-no-baseline", "exercise-order-sign", None),
    ("order-during-fever", "exercise-order-sign", None),
    ("cauda-equina-undated", "pacing-review", cauda_equina_undated),
    ("breast-cancer-coded-specifically", "pacing-review", breast_cancer_coded_specifically),
    ("order-metastasis", "exercise-order-sign", order_metastasis),
    ("preliminary-blood-pressure", "pacing-review", preliminary_blood_pressure),
    ("weight-loss-explained", "pacing-review", weight_loss_explained),
    ("weight-management-goal", "pacing-review", weight_management_goal),
    ("pregnancy-on-progress-week", "pacing-review", pregnancy_on_progress_week),
    ("pregnancy-high-blood-pressure", "pacing-review", pregnancy_high_blood_pressure),
    ("progressed-yesterday", "pacing-review", progressed_yesterday),
    ("stepped-back-3-days-ago", "pacing-review", stepped_back_3_days_ago),
    ("overachiever", "pacing-review", overachiever),
    ("no-pain-scores", "pacing-review", no_pain_scores),
    ("wearable-intervals", "pacing-review", wearable_intervals),
    ("two-devices", "pacing-review", two_devices),
    ("outlier-day", "pacing-review", outlier_day),
    ("sessions-without-duration", "pacing-review", sessions_without_duration),
    ("goal-unreadable", "pacing-review", goal_unreadable),
    ("sessions-in-kilocalories", "pacing-review", sessions_in_kilocalories),
    ("order-in-a-flare", "exercise-order-sign", order_in_a_flare),
    ("me-cfs-on-progress-week", "pacing-review", me_cfs),
    ("axial-spondyloarthritis", "pacing-review", axial_spondyloarthritis),
    ("no-birth-date", "pacing-review", no_birth_date),
    ("metastasis-in-remission", "pacing-review", metastasis_in_remission),
    ("basal-cell-carcinoma", "pacing-review", basal_cell_carcinoma),
    ("fracture-resolved-without-date", "pacing-review", fracture_resolved_without_date),
    ("severe-blood-pressure-then-normal", "pacing-review", severe_blood_pressure_then_normal),
    ("two-totals-one-day", "pacing-review", two_totals_one_day),
    ("session-sent-three-times", "pacing-review", session_sent_three_times),
    ("three-durations-one-session", "pacing-review", three_durations_one_session),
    ("twice-the-plan", "pacing-review", twice_the_plan),
    ("step-goal-without-quota", "pacing-review", step_goal_without_quota),
    ("goal-search-failed-minutes", "pacing-review", goal_search_failed_minutes),
    ("times-with-offsets", "pacing-review", times_with_offsets),
    ("goal-accepted", "pacing-review", goal_accepted),
    ("pain-scores-sent-twice", "pacing-review", pain_scores_sent_twice),
]


def build(name: str, service: str, builder: Callable[[Patient], Any] | None) -> dict[str, Any]:
    p = Patient(name, seed=sum(map(ord, name)))
    hook = {"pacing-review": "patient-view", "exercise-order-select": "order-select",
            "exercise-order-sign": "order-sign"}[service]
    if hook == "patient-view":
        assert builder is not None
        builder(p)
        context: dict[str, Any] = {"userId": "Practitioner/clinician-1", "patientId": p.pid, "encounterId": "enc-1"}
    else:
        if builder is not None:
            builder(p)
        elif name != "order-no-baseline":
            on_plan(p, 20, 3)
        if name == "order-during-fever":
            p.obs("vitals", "8310-5", "Body temperature", at(1, 9), 38.6, "Cel", category="vital-signs")
        minutes = {"order-dose-jump": 30, "order-fits": 22}.get(name, 20)
        draft = exercise_request(p.pid, f"{p.pid}-draft", minutes, 3, NOW.date().isoformat(), "draft")
        context = order_context(p, hook, draft)
    return {"hookInstance": str(uuid.uuid5(uuid.NAMESPACE_URL, f"pacing-cds-example:{name}")), "hook": hook,
            "context": context, "prefetch": p.prefetch()}


def write_requests(root: Path) -> None:
    for name, service, builder in SCENARIOS:
        target = root / name
        target.mkdir(parents=True, exist_ok=True)
        (target / "request.json").write_text(json.dumps(build(name, service, builder), indent=1) + "\n")
    print(f"wrote {len(SCENARIOS)} requests under {root}")


def write_answers(root: Path) -> None:
    """Record what the service answers now to each example (the rule set version replaced by a marker)."""
    sys.path.insert(0, str(ROOT))
    from cds.engine import RuleEngine, load_knowledge
    from tests.support.examples import EXAMPLES, VERSION_MARK, evaluate_output, recorded, run_example

    engine = RuleEngine(load_knowledge(root))
    version = engine.knowledge.version
    for example in EXAMPLES:
        answer = run_example(example.name, engine).response.to_json()
        (example.folder / "response.json").write_text(recorded(answer, version))
        (example.folder / "evaluate.txt").write_text(evaluate_output(example.name).replace(version, VERSION_MARK))
    print(f"recorded {len(EXAMPLES)} answers")


def main() -> None:
    write_requests(EXAMPLES_DIR)
    if "--answers" in sys.argv[1:]:
        write_answers(RULES)


if __name__ == "__main__":
    main()
