"""Engine stress: many distinct patients on many threads, compared with a single-threaded run.

Run as a subprocess by tests/engine/test_safety.py (so that a crash of the C core is a failed test, not a dead
test session) and by hand under valgrind:  python -m tests.support.stress --threads 8 --per-thread 2000
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cds.engine import RuleEngine, load_knowledge
from cds.engine.host import Evaluation

RULES = Path(__file__).resolve().parents[2] / "rules"
SERVICES = ("pacing-review", "exercise-order-select", "exercise-order-sign")
NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
RED_FLAGS = ("cauda-equina", "malignancy", "metastasis", "spinal-infection", "vertebral-fracture", "cardiac-symptom",
             "me-cfs")


def patient_case(i: int) -> tuple[str, list[dict[str, Any]]]:
    """A distinct, deterministic patient: its service and its facts."""
    rng = random.Random(i)
    service = SERVICES[i % 3]
    facts: list[dict[str, Any]] = []
    patient: dict[str, Any] = {
        "t": "patient", "has_prescription": rng.random() < 0.8, "valid_days": rng.randint(0, 28),
        "adherence": round(rng.uniform(0.3, 1.3), 3), "flare": rng.random() < 0.15,
        "flare_weeks": rng.randint(0, 3), "planned_below_start": rng.random() < 0.05,
        "acwr": round(rng.uniform(0.5, 1.8), 3), "boom_bust": rng.random() < 0.1, "inactive": rng.random() < 0.2,
        "weekly_minutes": round(rng.uniform(0, 200), 1), "mean_daily_steps": round(rng.uniform(500, 11000), 1),
        "pain_delta": round(rng.uniform(-2, 3), 2), "pain_known": True, "peg_unconfirmed": rng.random() < 0.05,
        "low_adherence_weeks": rng.randint(0, 3), "boom_above_plan": rng.random() < 0.05,
        "plan_unread": rng.random() < 0.05, "data_unread": rng.random() < 0.02, "days_on_dose": rng.randint(0, 60), "set_aside": rng.random() < 0.1}
    if rng.random() < 0.2:
        patient["days_since_step_back"] = rng.randint(0, 14)
    if rng.random() < 0.1:
        del patient["adherence"]  # nothing usable recorded this week
    if rng.random() < 0.1:
        del patient["pain_delta"]
        patient["pain_known"] = False
    if rng.random() < 0.9:
        patient["days_since_activity"] = rng.randint(0, 20)
    if rng.random() < 0.9:
        patient["days_since_pain"] = rng.randint(0, 20)
    facts.append(patient)
    if rng.random() < 0.3:
        facts.append({"t": "vitals", "systolic": float(rng.randint(100, 200)),
                      "diastolic": float(rng.randint(60, 120)), "temperature_max": round(rng.uniform(36, 39), 1)})
    if rng.random() < 0.1:
        facts.append({"t": "condition", "clinical": "current", "value_set": rng.choice(RED_FLAGS), "code": str(rng.randint(10**6, 10**9)),
                      "days_since_recorded": rng.randint(0, 90)})
    if service != "pacing-review":
        for k in range(rng.randint(1, 3)):
            order: dict[str, Any] = {"t": "order", "ref": f"ServiceRequest/p{i}-{k}",
                                     "has_activity_data": rng.random() < 0.85, "flare": rng.random() < 0.15,
                                     "at_or_above_plan": rng.random() < 0.5, "weekly": rng.randint(20, 200)}
            if order["has_activity_data"]:
                order["jump"] = round(rng.uniform(-0.2, 0.8), 3)
            facts.append(order)
    return service, facts


def nothing_matches(i: int) -> list[dict[str, Any]]:
    return [{"t": "vitals", "systolic": 110.0 + i % 30, "diastolic": 70.0, "temperature_max": 36.6}]


def canonical(evaluation: Evaluation) -> dict[str, Any]:
    return {"codes": evaluation.codes,
            "trace": sorted((f.rule_id, f.outcome, json.dumps(f.facts, sort_keys=True)) for f in evaluation.trace)}


def crossing(evaluation: Evaluation, facts: list[dict[str, Any]]) -> int:
    """Fired rules whose matched facts are not this evaluation's own facts."""
    own = {json.dumps(f, sort_keys=True) for f in facts}
    return sum(1 for f in evaluation.trace for fact in f.facts.values() if json.dumps(fact, sort_keys=True) not in own)


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    import os

    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


def run(threads: int, per_thread: int, nothing: int, rounds: int) -> dict[str, Any]:
    knowledge = load_knowledge(RULES)
    engine = RuleEngine(knowledge)
    total = threads * per_thread
    cases = [patient_case(i) for i in range(total)]
    started = time.perf_counter()
    single = [canonical(engine.evaluate(service, facts, NOW)) for service, facts in cases]
    single_s = time.perf_counter() - started

    mismatches = 0
    crossed = 0
    errors: list[str] = []
    rss: list[float] = []
    lock = threading.Lock()

    def worker(index: int) -> None:
        nonlocal mismatches, crossed
        local_mismatch = local_cross = 0
        for i in range(index * per_thread, (index + 1) * per_thread):
            service, facts = cases[i]
            try:
                evaluation = engine.evaluate(service, facts, NOW)
            except Exception as exc:
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}"[:200])
                continue
            local_cross += crossing(evaluation, facts)
            if canonical(evaluation) != single[i]:
                local_mismatch += 1
        with lock:
            mismatches += local_mismatch
            crossed += local_cross

    started = time.perf_counter()
    for _ in range(rounds):
        pool = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
        rss.append(round(rss_mb(), 1))
    threaded_s = time.perf_counter() - started

    unmatched_findings = 0
    for i in range(nothing):
        evaluation = engine.evaluate(SERVICES[i % 3], nothing_matches(i), NOW)
        unmatched_findings += len(evaluation.trace)
    rss.append(round(rss_mb(), 1))
    return {
        "evaluations_single": total, "evaluations_threaded": total * rounds, "threads": threads,
        "errors": errors[:5], "error_count": len(errors), "mismatches": mismatches, "crossed": crossed,
        "nothing_matches": nothing, "nothing_matches_findings": unmatched_findings,
        "codes_seen": sorted({c for s in single for c in s["codes"]}),
        "rss_mb_after_each_round": rss, "single_s": round(single_s, 2), "threaded_s": round(threaded_s, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--per-thread", type=int, default=2000)
    parser.add_argument("--nothing", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args(argv)
    result = run(args.threads, args.per_thread, args.nothing, args.rounds)
    print(json.dumps(result))
    ok = not result["error_count"] and not result["mismatches"] and not result["crossed"]
    return 0 if ok and not result["nothing_matches_findings"] else 1


if __name__ == "__main__":
    sys.exit(main())
