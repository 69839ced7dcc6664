"""A synthetic FHIR Bulk Data export of N patients, deterministic by seed, for the worklist and its benchmark.

    .venv/bin/python -m bench.export OUT --patients 2000 [--seed 7] [--days 90] [--now 2026-11-20] [--gzip]

Patients follow the archetypes of the end-to-end examples in rules/ (progress, goal met, low adherence, flare,
repeated flares, new patient, steps only, boom-bust, inactivity, data gap, red flags, PEG only, pounds and
Fahrenheit) over
`--days` days of history, with noise in every value, days with nothing recorded, and steps counted by a phone
and a watch. Observations are split into several files (as export servers write them) and shuffled within
blocks of patients, so one patient's data is spread over files.
"""

from __future__ import annotations

import argparse
import gzip
import random
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import orjson

LOINC, SNOMED, UCUM = "http://loinc.org", "http://snomed.info/sct", "http://unitsofmeasure.org"
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
NRS, STEPS, SESSION = "72514-3", "41950-7", "55411-3"
TYPES = ("Patient", "Condition", "Goal", "ServiceRequest", "CarePlan", "Observation")
BLOCK = 250  # patients whose Observations are shuffled together before writing


class Synthetic:
    """One patient's resources, as of `now`, with `days` of history."""

    def __init__(self, pid: str, rng: random.Random, now: datetime, days: int) -> None:
        self.pid, self.rng, self.now, self.days = pid, rng, now, days
        self.resources: list[dict[str, Any]] = []
        self.count = 0
        self.missing = {d for d in range(days) if rng.random() < rng.choice((0.03, 0.08, 0.15))}
        self.devices = [f"Device/{pid}-phone"] + ([f"Device/{pid}-watch"] if rng.random() < 0.5 else [])
        self.resources.append({"resourceType": "Patient", "id": pid, "active": True,
                               "gender": rng.choice(("female", "male")),
                               "birthDate": f"{rng.randint(1945, 2000)}-{rng.randint(1, 12):02d}-15"})
        self.condition("chronic-pain", "82423001", "Chronic pain", days_ago=days + 200)

    def at(self, days_ago: int, hour: int, minute: int = 0) -> str:
        moment = (self.now - timedelta(days=days_ago)).replace(hour=hour, minute=minute, second=0, microsecond=0)
        return moment.isoformat().replace("+00:00", "Z")

    def day(self, days_ago: int) -> str:
        return (self.now - timedelta(days=days_ago)).date().isoformat()

    def recorded(self, d: int) -> bool:
        return 0 <= d < self.days and d not in self.missing

    def obs(self, code: str, display: str, when: str, value: float | None, unit: str, category: str = "survey",
            **extra: Any) -> None:
        self.count += 1
        resource: dict[str, Any] = {
            "resourceType": "Observation", "id": f"{self.pid}-o{self.count}", "status": "final",
            "category": [{"coding": [{"system": OBS_CATEGORY, "code": category}]}],
            "code": {"coding": [{"system": LOINC, "code": code, "display": display}]},
            "subject": {"reference": f"Patient/{self.pid}"}, "effectiveDateTime": when, **extra}
        if value is not None:
            resource["valueQuantity"] = {"value": value, "unit": unit, "system": UCUM, "code": unit}
        self.resources.append(resource)

    def pain(self, days: range, low: int, high: int, hour: int = 20) -> None:
        """Daily NRS: `low` most days, `high` about one day in five, a point of noise now and then."""
        for d in days:
            if self.recorded(d):
                value = high if d % 5 == 0 else low
                if self.rng.random() < 0.1:
                    value = min(10, max(0, value + self.rng.choice((-1, 1))))
                self.obs(NRS, "Pain severity - 0-10 verbal numeric rating [Score] - Reported", self.at(d, hour),
                         value, "{score}")

    def peg(self, days: range, mean: float) -> None:
        for d in days:
            if self.recorded(d):
                items = [round(min(10, max(0, mean + self.rng.uniform(-0.4, 0.4)))) for _ in range(3)]
                parts = [{"code": {"coding": [{"system": LOINC, "code": c}]},
                          "valueQuantity": {"value": v, "unit": "{score}", "system": UCUM, "code": "{score}"}}
                         for c, v in zip(("75893-8", "91145-3", "91146-1"), items)]
                self.obs("91148-7", "PEG 3-item pain scale", self.at(d, 19), None, "", component=parts)

    def sessions(self, days: range, minutes: Callable[[int], float], weekdays: tuple[int, ...] = (1, 3, 5)) -> None:
        for d in days:
            if d % 7 in weekdays and self.recorded(d):
                self.obs(SESSION, "Exercise duration", self.at(d, 7, 30), round(minutes(d)), "min",
                         category="activity", device={"reference": self.devices[-1]})

    def steps(self, days: range, count: Callable[[int], float]) -> None:
        """A day's steps from each device; a watch reports a little more than the phone, a little later."""
        for d in days:
            if not self.recorded(d):
                continue
            base = count(d)
            for k, device in enumerate(self.devices):
                self.obs(STEPS, "Number of steps in 24 hour Measured", self.at(d, 23, 40 + 10 * k),
                         max(0, round(base * (1 + 0.04 * k))), "/d", category="activity",
                         device={"reference": device})

    def background_steps(self, days: range, mean: int) -> None:
        self.steps(days, lambda d: mean + self.rng.randint(-600, 600))

    def blood_pressure(self, days_ago: int, systolic: int, diastolic: int) -> None:
        parts = [{"code": {"coding": [{"system": LOINC, "code": c}]},
                  "valueQuantity": {"value": v, "unit": "mm[Hg]", "system": UCUM, "code": "mm[Hg]"}}
                 for c, v in (("8480-6", systolic), ("8462-4", diastolic))]
        self.obs("85354-9", "Blood pressure panel", self.at(days_ago, 10), None, "", category="vital-signs",
                 component=parts)

    def routine_vitals(self) -> None:
        """A clinic visit a month: blood pressure in the normal range, body weight."""
        weight = self.rng.uniform(55, 110)
        for days_ago in range(self.rng.randint(2, 28), self.days, 30):
            self.blood_pressure(days_ago, self.rng.randint(112, 138), self.rng.randint(68, 86))
            self.obs("29463-7", "Body weight", self.at(days_ago, 10, 5), round(weight + self.rng.uniform(-1, 1), 1),
                     "kg", category="vital-signs")

    def condition(self, name: str, code: str, display: str, days_ago: int, verification: str = "confirmed",
                  clinical: str = "active", abated_days_ago: int | None = None) -> None:
        resource = {
            "resourceType": "Condition", "id": f"{self.pid}-{name}",
            "clinicalStatus": {"coding": [{"system": CLINICAL, "code": clinical}]},
            "verificationStatus": {"coding": [{"system": VERIFICATION, "code": verification}]},
            "code": {"coding": [{"system": SNOMED, "code": code, "display": display}]},
            "subject": {"reference": f"Patient/{self.pid}"}, "recordedDate": self.day(days_ago)}
        if abated_days_ago is not None:
            resource["abatementDateTime"] = self.day(abated_days_ago)
        self.resources.append(resource)

    def order(self, name: str, minutes: int, per_week: int, days_ago: int, status: str = "active") -> None:
        self.resources.append({
            "resourceType": "ServiceRequest", "id": f"{self.pid}-{name}", "status": status, "intent": "order",
            "code": {"coding": [{"system": SNOMED, "code": "229065009", "display": "Exercise therapy"}]},
            "subject": {"reference": f"Patient/{self.pid}"}, "authoredOn": self.day(days_ago),
            "occurrenceTiming": {"repeat": {"frequency": per_week, "period": 1, "periodUnit": "wk",
                                            "duration": minutes, "durationUnit": "min"}},
            "patientInstruction": f"Walk {minutes} minutes, {per_week} times a week."})

    def step_goal(self, steps: int, days_ago: int) -> None:
        """An active daily-steps Goal, started `days_ago`: its start is the time on the dose."""
        self.resources.append({
            "resourceType": "Goal", "id": f"{self.pid}-goal", "lifecycleStatus": "active",
            "description": {"text": f"{steps} steps a day"}, "subject": {"reference": f"Patient/{self.pid}"},
            "startDate": self.day(days_ago),
            "target": [{"measure": {"coding": [{"system": LOINC, "code": STEPS}]},
                        "detailQuantity": {"value": steps, "unit": "steps/day", "system": UCUM, "code": "/d"}}]})


# ---------------------------------------------------------------- archetypes (those of the end-to-end examples)


def on_plan(p: Synthetic, minutes: int, per_week: int, weekdays: tuple[int, ...] = (1, 3, 5)) -> None:
    """A plan followed for weeks with stable pain; an earlier, smaller plan completed before it."""
    authored = p.rng.randint(40, 60)
    p.order("earlier", max(10, minutes - 5), per_week, min(p.days, authored + 30), status="completed")
    p.order("order", minutes, per_week, authored)
    p.sessions(range(0, p.days), lambda d: minutes + p.rng.choice((0, 0, 1)), weekdays)
    low = p.rng.randint(2, 5)
    p.pain(range(0, p.days), low, low + 1)
    p.background_steps(range(0, p.days), p.rng.randint(30, 80) * 100)
    p.routine_vitals()


def progress(p: Synthetic) -> None:
    on_plan(p, p.rng.choice((15, 20, 25)), 3)


def progress_add_session(p: Synthetic) -> None:
    on_plan(p, 30, 3)


def goal_met(p: Synthetic) -> None:
    on_plan(p, 40, 5, weekdays=(0, 1, 2, 4, 5))  # 200 min a week: still 150 or more with a day missing


def hold_low_adherence(p: Synthetic) -> None:
    p.order("order", 20, 3, 50)
    p.sessions(range(7, p.days), lambda d: 20)
    p.sessions(range(0, 7), lambda d: 20, weekdays=(3,))
    p.pain(range(0, p.days), 4, 5)
    p.routine_vitals()
    p.background_steps(range(0, p.days), p.rng.randint(30, 80) * 100)


def step_back_flare(p: Synthetic) -> None:
    p.order("order", 25, 4, 50)
    p.sessions(range(0, p.days), lambda d: 25, weekdays=(0, 2, 4, 6))
    p.pain(range(6, p.days), 3, 4)
    p.pain(range(0, 5), 6, 7)
    p.routine_vitals()
    p.background_steps(range(0, p.days), p.rng.randint(30, 80) * 100)


def re_baseline(p: Synthetic) -> None:
    p.order("order", 25, 3, 50)
    p.sessions(range(0, p.days), lambda d: 25)
    for start, low in ((0, 6), (5, 3), (14, 6), (21, 3)):
        p.pain(range(start, start + (5 if start == 0 else 7 if start != 21 else p.days - 21)), low, low + 1,
               hour=8)
    p.background_steps(range(0, p.days), p.rng.randint(30, 80) * 100)


def establish_baseline(p: Synthetic) -> None:
    p.steps(range(0, 2), lambda d: 4200 + p.rng.randint(-300, 300))
    p.pain(range(0, 2), 5, 6)


def start_steps(p: Synthetic) -> None:
    level = p.rng.randint(45, 70) * 100
    p.steps(range(0, 9), lambda d: level + (d % 3 - 1) * 200)
    p.pain(range(0, 9), 4, 5)


def progress_steps(p: Synthetic) -> None:
    p.step_goal(5000, p.rng.randint(40, 60))
    p.steps(range(0, p.days), lambda d: 5600 + p.rng.randint(-300, 300))
    p.pain(range(0, p.days), 4, 5)


def data_gap(p: Synthetic) -> None:
    gap = p.rng.randint(15, 40)
    p.order("order", 20, 3, min(p.days, gap + 30))
    p.sessions(range(gap, p.days), lambda d: 20)
    p.pain(range(gap, p.days), 4, 5)
    p.background_steps(range(gap, p.days), 5000)


def red_flag_blood_pressure(p: Synthetic) -> None:
    on_plan(p, 20, 3)
    p.blood_pressure(3, 186, 96)


def red_flag_condition(p: Synthetic) -> None:
    on_plan(p, 20, 3)
    code, display = p.rng.choice((("363346000", "Malignant neoplastic disease"),
                                  ("314667001", "Burst fracture of vertebra"),
                                  ("203159006", "Acute osteomyelitis of lumbar spine"),
                                  ("192970008", "Cauda equina syndrome")))
    p.condition("red-flag", code, display, days_ago=p.rng.randint(1, 10))


def refuted_red_flag(p: Synthetic) -> None:
    on_plan(p, 20, 3)
    p.condition("fracture", "314667001", "Burst fracture of vertebra", days_ago=10, verification="refuted")
    p.condition("old-infection", "203159006", "Acute osteomyelitis of lumbar spine", days_ago=80,
                clinical="resolved", abated_days_ago=30)  # resolved with a date: over


def pounds_and_fahrenheit(p: Synthetic) -> None:
    on_plan(p, 20, 3)
    for days_ago, pounds in ((85, 181.0), (60, 178.5), (30, 172.0), (5, 166.2)):
        p.obs("29463-7", "Body weight", p.at(days_ago, 9), pounds, "[lb_av]", category="vital-signs")
    p.obs("8310-5", "Body temperature", p.at(2, 9), 98.9, "[degF]", category="vital-signs")


def peg_only(p: Synthetic) -> None:
    p.order("order", 20, 3, 50)
    p.sessions(range(0, p.days), lambda d: 20)
    p.peg(range(7, p.days, 3), 4.0)
    p.peg(range(1, 2), 5.7)
    p.background_steps(range(0, p.days), p.rng.randint(30, 80) * 100)


def boom_bust(p: Synthetic) -> None:
    p.step_goal(6000, p.rng.randint(40, 60))
    p.steps(range(14, p.days), lambda d: 6000 + p.rng.randint(-300, 300))
    p.steps(range(0, 14), lambda d: (11500 if d % 3 == 2 else 2200 if d % 3 == 1 else 5800)
            + p.rng.randint(-200, 200))
    p.pain(range(0, p.days), 4, 5)


def inactivity(p: Synthetic) -> None:
    """Sessions as planned, and barely moving otherwise: fewer than 5,000 steps a day (a patient at a step
    quota of their own is not called inactive)."""
    p.order("order", 20, 3, p.rng.randint(40, 60))
    p.sessions(range(0, p.days), lambda d: 20)
    p.pain(range(0, p.days), 5, 6)
    p.background_steps(range(0, p.days), p.rng.randint(25, 40) * 100)


# name, weight in the panel, builder
ARCHETYPES: list[tuple[str, int, Callable[[Synthetic], None]]] = [
    ("progress", 20, progress), ("progress-add-session", 5, progress_add_session), ("goal-met", 6, goal_met),
    ("hold-low-adherence", 8, hold_low_adherence), ("step-back-flare", 7, step_back_flare),
    ("re-baseline", 4, re_baseline), ("establish-baseline", 4, establish_baseline),
    ("start-steps", 5, start_steps), ("progress-steps", 8, progress_steps), ("data-gap", 8, data_gap),
    ("red-flag-blood-pressure", 2, red_flag_blood_pressure), ("red-flag-condition", 2, red_flag_condition),
    ("refuted-red-flag", 3, refuted_red_flag), ("pounds-and-fahrenheit", 2, pounds_and_fahrenheit),
    ("peg-only", 4, peg_only), ("boom-bust", 6, boom_bust), ("inactivity", 6, inactivity),
]


def patient(index: int, seed: int, now: datetime, days: int) -> tuple[str, list[dict[str, Any]]]:
    """The archetype and resources of patient number `index`: the same for the same seed, whatever N is."""
    rng = random.Random(f"{seed}:{index}")
    name, _, build = rng.choices(ARCHETYPES, weights=[w for _, w, _ in ARCHETYPES])[0]
    p = Synthetic(f"p{seed}-{index:06d}", rng, now, days)
    build(p)
    return name, p.resources


def patients(n: int, seed: int, now: datetime, days: int) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    for index in range(n):
        yield patient(index, seed, now, days)


class Writer:
    """NDJSON files per resource type; Observations split every `split` lines into numbered files."""

    def __init__(self, out: Path, gzip_files: bool, split: int) -> None:
        self.out, self.gzip, self.split = out, gzip_files, split
        self.handles: dict[str, IO[bytes]] = {}
        self.lines: dict[str, int] = {}
        self.parts: dict[str, int] = {}

    def _open(self, kind: str) -> IO[bytes]:
        part = self.parts.get(kind, 0) + 1
        self.parts[kind] = part
        name = f"{kind}.ndjson" if kind != "Observation" else f"{kind}.{part:03d}.ndjson"
        path = self.out / (name + (".gz" if self.gzip else ""))
        return gzip.open(path, "wb", compresslevel=3) if self.gzip else open(path, "wb")

    def write(self, resource: dict[str, Any]) -> None:
        kind = resource["resourceType"]
        handle = self.handles.get(kind)
        if handle is None or (kind == "Observation" and self.lines.get(kind, 0) >= self.split):
            if handle is not None:
                handle.close()
            handle = self.handles[kind] = self._open(kind)
            self.lines[kind] = 0
        handle.write(orjson.dumps(resource) + b"\n")
        self.lines[kind] += 1

    def close(self) -> None:
        for handle in self.handles.values():
            handle.close()
        for kind in TYPES:  # a type the panel has none of is an empty file: read, and empty
            if kind not in self.handles:
                self._open(kind).close()


def write_export(out: Path, n: int, seed: int = 7, now: datetime | None = None, days: int = 90,
                 gzip_files: bool = False, split: int = 100_000) -> dict[str, int]:
    """Write the export; returns the number of patients per archetype."""
    now = now or datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    out.mkdir(parents=True, exist_ok=True)
    writer = Writer(out, gzip_files, split)
    counts: dict[str, int] = {}
    block: list[dict[str, Any]] = []
    shuffle = random.Random(f"{seed}:order")
    try:
        for index, (name, resources) in enumerate(patients(n, seed, now, days)):
            counts[name] = counts.get(name, 0) + 1
            block.extend(resources)
            if (index + 1) % BLOCK == 0 or index + 1 == n:
                shuffle.shuffle(block)
                for resource in sorted(block, key=lambda r: TYPES.index(r["resourceType"])):
                    writer.write(resource)
                block = []
    finally:
        writer.close()
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--patients", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--now", default="2026-11-20", help="the last day of data (the worklist's --now)")
    parser.add_argument("--gzip", action="store_true", help="gzip every file, as many export servers do")
    parser.add_argument("--split", type=int, default=100_000, help="Observations per file")
    args = parser.parse_args(argv)
    now = datetime.fromisoformat(args.now).replace(hour=9, tzinfo=UTC)
    counts = write_export(args.out, args.patients, args.seed, now, args.days, args.gzip, args.split)
    files = sorted(p.name for p in args.out.iterdir())
    print(f"wrote {args.patients} patients to {args.out} ({len(files)} files): "
          + ", ".join(f"{name} {count}" for name, count in sorted(counts.items())), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
