"""Worklist benchmark: patients per second and peak RSS per worker, Dask against a plain one-process loop.

    .venv/bin/python -m bench.worklist [--sizes 1000,5000,20000] [--days 90] [--dir /tmp/pacing-bench]

For each size a synthetic export (bench/export.py, about 250 Observations a patient over 90 days) is written
once, then evaluated three ways, each in a fresh process so that peak RSS is its own:
- loop: one process reads every file, groups the lines by patient in a dict and evaluates each patient with
  the same function the Dask tasks call (cds.panel.rows.evaluate_group); the baseline;
- dask 1 / dask 2: `pacing-cds worklist`'s job on a LocalCluster of 1 or 2 single-threaded worker processes.
Both clocks include building the rule engine (the loop once; each Dask worker once, in parallel) and stop when
every row is back. Targets: 2 workers >= 1.6x the loop; Dask's overhead at 1 worker <= 25 %; peak RSS per worker
from 5,000 to 20,000 patients < 1.2x.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_loop(export_dir: Path) -> dict[str, Any]:
    """The baseline: read, group in memory, evaluate; no Dask."""
    from cds.engine import RuleEngine, load_knowledge
    from cds.heap import settle_heap
    from cds.panel.rows import evaluate_group
    from cds.panel.source import PROBLEM_KEY, discover, read_part

    started = time.perf_counter()  # the rule engine's build counts, as it does on each Dask worker
    engine = RuleEngine(load_knowledge(ROOT / "rules"))
    settle_heap()  # as each Dask worker does once its engine is built
    groups: dict[str, list[tuple[str, int, str]]] = {}
    for part in discover(export_dir).parts:
        columns = read_part(part)
        for pid, file, line, text in zip(columns["patient"], columns["file"], columns["line"], columns["resource"]):
            if pid != PROBLEM_KEY:
                groups.setdefault(pid, []).append((file, line, text))
    rows = sum(1 for pid, items in groups.items() if evaluate_group(engine, pid, items, NOW)[0] is not None)
    return {"rows": rows, "seconds": time.perf_counter() - started, "peak_rss_mb": peak_rss_mb()}


def run_dask(export_dir: Path, workers: int) -> dict[str, Any]:
    """The worklist job on a LocalCluster; peak RSS is the largest of the worker processes'."""
    from cds.panel.job import dask_client, run
    from cds.panel.source import discover
    from cds.panel.workers import rule_bundle

    export = discover(export_dir)
    with dask_client(None, workers) as client:
        result = run(client, export, rule_bundle(ROOT / "rules"), NOW)
        rss = client.run(peak_rss_mb)
    return {"rows": len(result.rows), "seconds": result.seconds, "peak_rss_mb": max(rss.values()),
            "partitions": result.partitions}


def measure(mode: str, export_dir: Path) -> dict[str, Any]:
    """One measurement in a fresh interpreter."""
    done = subprocess.run([sys.executable, "-m", "bench.worklist", "--one", mode, str(export_dir)], cwd=ROOT,
                          capture_output=True, text=True, timeout=3 * 3600)
    if done.returncode != 0:
        raise SystemExit(f"{mode} on {export_dir} failed:\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def ensure_export(base: Path, n: int, days: int) -> Path:
    from bench.export import write_export

    folder = base / f"export-{n}-{days}d"
    if not (folder / ".complete").exists():
        started = time.perf_counter()
        write_export(folder, n, seed=7, now=NOW, days=days)
        (folder / ".complete").touch()
        print(f"# wrote {n} patients in {time.perf_counter() - started:.0f} s to {folder}", file=sys.stderr)
    return folder


def table(results: dict[int, dict[str, dict[str, Any]]]) -> None:
    print(f"{'patients':>8}  {'run':<7} {'s':>7} {'patients/s':>10} {'vs loop':>7} {'peak RSS/worker MB':>18}")
    for n, runs in results.items():
        loop = runs["loop"]["seconds"]
        for mode, r in runs.items():
            print(f"{n:>8}  {mode:<7} {r['seconds']:>7.1f} {n / r['seconds']:>10.0f} {loop / r['seconds']:>6.2f}x "
                  f"{r['peak_rss_mb']:>18.0f}")


def verdicts(results: dict[int, dict[str, dict[str, Any]]]) -> None:
    print("\nTargets")
    for n, runs in results.items():
        loop = runs["loop"]["seconds"]
        speedup = loop / runs["dask 2"]["seconds"]
        overhead = runs["dask 1"]["seconds"] / loop - 1
        print(f"  {n:>6} patients: 2 workers {speedup:.2f}x the loop (target >= 1.6x: "
              f"{'met' if speedup >= 1.6 else 'NOT met'}); overhead at 1 worker {overhead:+.0%} "
              f"(target <= 25 %: {'met' if overhead <= 0.25 else 'NOT met'})")
    if 5000 in results and 20000 in results:
        for mode in ("dask 1", "dask 2"):
            ratio = results[20000][mode]["peak_rss_mb"] / results[5000][mode]["peak_rss_mb"]
            print(f"  peak RSS per worker, {mode}, 20,000 / 5,000 patients: {ratio:.2f}x "
                  f"(target < 1.2x: {'met' if ratio < 1.2 else 'NOT met'})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,5000,20000")
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/pacing-cds-bench"))
    parser.add_argument("--one", nargs=2, metavar=("MODE", "EXPORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        mode, folder = args.one[0], Path(args.one[1])
        out = run_loop(folder) if mode == "loop" else run_dask(folder, int(mode.split()[-1]))
        print(json.dumps(out))
        return 0
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python "
          f"{platform.python_version()}, load average {os.getloadavg()[0]:.1f} at start", file=sys.stderr)
    results: dict[int, dict[str, dict[str, Any]]] = {}
    for n in (int(s) for s in args.sizes.split(",")):
        folder = ensure_export(args.dir, n, args.days)
        results[n] = {}
        for mode in ("loop", "dask 1", "dask 2"):
            results[n][mode] = r = measure(mode, folder)
            assert r["rows"] == n, f"{mode}: {r['rows']} rows for {n} patients"
            print(f"# {n} {mode}: {r['seconds']:.1f} s, {r['peak_rss_mb']:.0f} MB", file=sys.stderr, flush=True)
    table(results)
    verdicts(results)
    print(f"\nload average at the end {os.getloadavg()[0]:.1f} (2 cores shared with other work)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
