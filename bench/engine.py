"""Rule engine benchmark: evaluations per second and latency per evaluation for the full rule set.

    .venv/bin/python bench/engine.py [--n 5000]

Each row is compared with the baseline measured in the same run: an evaluation with no facts, which costs
one engine session (sentinel fact, then state deletion) and nothing else.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cds.engine import RuleEngine, load_knowledge  # noqa: E402
from tests.support.stress import nothing_matches, patient_case  # noqa: E402

NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
ON_TRACK: dict[str, Any] = {
    "t": "patient", "has_prescription": True, "valid_days": 14, "days_since_activity": 0, "days_since_pain": 0,
    "adherence": 0.9, "pain_delta": 0.0, "flare": False, "flare_weeks": 0, "planned_below_start": False,
    "acwr": 1.0, "boom_bust": False, "inactive": False, "weekly_minutes": 60, "mean_daily_steps": 5500}


def _progressing() -> list[dict[str, Any]]:
    """The facts of the first scenario of rules/ in which `progress` fires."""
    knowledge = load_knowledge(ROOT / "rules")
    return next(list(s.given) for _, s in knowledge.scenarios if s.rule == "progress" and s.fires)


PROGRESSING = _progressing()


def cases(n: int) -> list[tuple[str, str, list[tuple[str, list[dict[str, Any]]]]]]:
    return [
        ("baseline: empty session", "pacing-review", [("pacing-review", [])] * n),
        ("nothing matches", "pacing-review", [("pacing-review", nothing_matches(i)) for i in range(n)]),
        ("on-track patient -> progress", "pacing-review", [("pacing-review", PROGRESSING)] * n),
        ("red flags + patterns", "pacing-review", [("pacing-review", [
            {**ON_TRACK, "boom_bust": True, "inactive": True},
            {"t": "vitals", "systolic": 190.0, "diastolic": 100.0, "temperature_max": 38.5},
            {"t": "condition", "clinical": "current", "value_set": "vertebral-fracture", "code": "S22.000A"}])] * n),
        ("3 draft orders", "exercise-order-sign", [("exercise-order-sign", [
            {"t": "order", "ref": f"ServiceRequest/o{k}", "has_activity_data": True, "jump": 0.1 + 0.2 * k}
            for k in range(3)])] * n),
        ("mixed distinct patients", "all", [patient_case(i) for i in range(n)]),
    ]


def measure(engine: RuleEngine, work: list[tuple[str, list[dict[str, Any]]]]) -> tuple[float, float, float]:
    for service, facts in work[:200]:  # warm-up
        engine.evaluate(service, facts, NOW)
    times = []
    started = time.perf_counter()
    for service, facts in work:
        t0 = time.perf_counter()
        engine.evaluate(service, facts, NOW)
        times.append(time.perf_counter() - t0)
    elapsed = time.perf_counter() - started
    times.sort()
    return len(work) / elapsed, statistics.median(times) * 1e6, times[int(len(times) * 0.99) - 1] * 1e6


def silent_engine() -> RuleEngine:
    """The rules with `progress` in silent mode: what a rule in pilot adds (a second precedence resolution and the
    trace of what it would have said) when it fires."""
    import shutil
    import tempfile

    import yaml

    with tempfile.TemporaryDirectory() as folder:
        rules = Path(folder) / "rules"
        shutil.copytree(ROOT / "rules", rules)
        path = rules / "progress" / "rule.yaml"
        document = yaml.safe_load(path.read_text())
        document["rules"][0]["mode"] = "silent"
        path.write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True))
        return RuleEngine(load_knowledge(rules))


def threaded(engine: RuleEngine, work: list[tuple[str, list[dict[str, Any]]]], threads: int) -> float:
    chunks = [work[i::threads] for i in range(threads)]

    def run(chunk: list[tuple[str, list[dict[str, Any]]]]) -> None:
        for service, facts in chunk:
            engine.evaluate(service, facts, NOW)

    pool = [threading.Thread(target=run, args=(chunk,)) for chunk in chunks]
    started = time.perf_counter()
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return len(work) / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=5000, help="evaluations per row")
    args = parser.parse_args()
    knowledge = load_knowledge(ROOT / "rules")
    engine = RuleEngine(knowledge)
    print(f"Rule engine benchmark: {len(knowledge.rules)} rules, rule set {knowledge.version}, "
          f"{args.n} evaluations a row")
    print(f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs\n")
    header = f"| {'case':<30} | {'evals/s':>9} | {'p50 us':>8} | {'p99 us':>8} | {'ratio':>16} |"
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    baseline = None
    for name, _service, work in cases(args.n):
        rate, p50, p99 = measure(engine, work)
        baseline = baseline or p50
        print(f"| {name:<30} | {rate:>9,.0f} | {p50:>8.1f} | {p99:>8.1f} | {f'{p50 / baseline:.2f} x baseline':>16} |")
    pilot = silent_engine()
    assert pilot.evaluate("pacing-review", PROGRESSING, NOW).silent, "progress is silent in these facts"
    rate, p50, p99 = measure(pilot, [("pacing-review", PROGRESSING)] * args.n)
    assert baseline is not None
    print(f"| {'on-track, progress in pilot':<30} | {rate:>9,.0f} | {p50:>8.1f} | {p99:>8.1f} | "
          f"{f'{p50 / baseline:.2f} x baseline':>16} |")
    mixed = cases(args.n)[-1][2]
    single_rate = measure(engine, mixed)[0]
    for threads in (4, 8):
        rate = threaded(engine, mixed, threads)
        print(f"| {f'mixed, {threads} threads':<30} | {rate:>9,.0f} | {'':>8} | {'':>8} | "
              f"{f'{rate / single_rate:.2f} x 1 thread':>16} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
