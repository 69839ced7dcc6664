"""Worklist benchmark: patients per second and peak RSS per worker, against the floor of just parsing the export.

    .venv/bin/python -m bench.worklist [--sizes 5000,20000] [--days 90] [--dir /tmp/pacing-cds-bench]

For each size a synthetic export (bench/export.py, about 250 Observations a patient over 90 days) is written
once, and the panel's store is built from it once (cds/panel/store.py, as a full run from a FHIR server builds it;
its time is shown as "store build"). Then, each in a fresh process so that peak RSS is its own:
- floor: one core reads every file, parses each line with orjson and groups the lines by patient; nothing else.
  The speed a worker would have if evaluating cost nothing. "floor parsed" groups the parsed resources instead
  (up to PARSED_MAX patients: it holds them all);
- loop: one process reads every file, groups the lines by patient and evaluates each patient with the same
  function the Dask tasks call (cds.panel.rows.evaluate_group);
- folder 1 / folder 2: `pacing-cds worklist EXPORT`'s job on a LocalCluster of 1 or 2 single-threaded workers;
- store 1 / store 2: the same job over the panel's store (Parquet, bucketed by patient), as `--fhir-server` runs
  evaluate the panel after each export.
The clocks include building the rule engine (the loop once; each Dask worker once, in parallel) and stop when
every row is back. Targets: the store's patients per second per worker >= the floor; peak RSS per worker <= 400 MB
and, from the smallest to the largest size, < 1.2x.
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
    from cds.collector import settle_heap
    from cds.engine import RuleEngine, load_knowledge
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


def run_floor(export_dir: Path, parsed: bool = False) -> dict[str, Any]:
    """Read every line, parse it with orjson and group by patient: nothing else. The lines are what is grouped
    (the strict floor); with `parsed`, the parsed resources, whose millions of live dicts make the collector's
    passes the larger cost (it is run only up to PARSED_MAX patients: about 0.6 MB of dicts a patient)."""
    import orjson

    from cds.panel.source import patient_of

    started = time.perf_counter()
    groups: dict[str, list[Any]] = {}
    for path in sorted(export_dir.glob("*.ndjson")):
        with open(path, "rb") as handle:
            for line in handle:
                resource = orjson.loads(line)
                groups.setdefault(patient_of(resource)[0] or "", []).append(resource if parsed else line)
    return {"rows": len(groups), "seconds": time.perf_counter() - started, "peak_rss_mb": peak_rss_mb()}


def store_of(export_dir: Path) -> Path:
    return export_dir.with_name(export_dir.name + "-store")


def build_store(export_dir: Path) -> float:
    """The panel's store of the export (as a full run from a FHIR server builds it); the seconds it took."""
    from cds.panel import store
    from cds.panel.source import TYPES, discover

    started = time.perf_counter()
    store.rebuild(store_of(export_dir), discover(export_dir), "http://127.0.0.1/fhir", None, list(TYPES), "bench")
    return time.perf_counter() - started


def run_dask(export_dir: Path, workers: int, from_store: bool = False) -> dict[str, Any]:
    """The worklist job on a LocalCluster; peak RSS is the largest of the worker processes'."""
    from cds.panel import store
    from cds.panel.job import dask_client, run
    from cds.panel.source import discover
    from cds.panel.workers import rule_bundle

    if from_store:
        held = store.load(store_of(export_dir))
        assert held is not None
        export = store.as_export(store_of(export_dir), held, [], {}, [])
    else:
        export = discover(export_dir)
    with dask_client(None, workers) as client:
        result = run(client, export, rule_bundle(ROOT / "rules"), NOW, spill=export_dir.parent)
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


MODES = ("floor", "floor parsed", "loop", "folder 1", "folder 2", "store 1", "store 2")
PARSED_MAX = 5000


def workers_of(mode: str) -> int:
    """The worker processes of a mode: 1 for the one-process runs."""
    return int(mode.split()[-1]) if mode.split()[-1].isdigit() else 1


def table(results: dict[int, dict[str, dict[str, Any]]], builds: dict[int, float]) -> None:
    print(f"{'patients':>8}  {'run':<12} {'s':>7} {'patients/s':>10} {'per worker':>10} {'vs floor':>8} "
          f"{'peak RSS/worker MB':>18}")
    for n, runs in results.items():
        floor = n / runs["floor"]["seconds"]
        if builds[n]:
            print(f"{n:>8}  {'store build':<12} {builds[n]:>7.1f} {n / builds[n]:>10.0f}")
        for mode, r in runs.items():
            rate = n / r["seconds"]
            each = rate / workers_of(mode)
            print(f"{n:>8}  {mode:<12} {r['seconds']:>7.1f} {rate:>10.0f} {each:>10.0f} {each / floor:>7.2f}x "
                  f"{r['peak_rss_mb']:>18.0f}")


def verdicts(results: dict[int, dict[str, dict[str, Any]]]) -> None:
    print("\nTargets")
    for n, runs in results.items():
        floor = n / runs["floor"]["seconds"]
        for mode in (m for m in ("store 1", "store 2", "folder 1", "folder 2") if m in runs):
            each = n / runs[mode]["seconds"] / workers_of(mode)
            rss = runs[mode]["peak_rss_mb"]
            print(f"  {n:>6} patients, {mode:<8}: {each:.0f} patients/s per worker against the floor's {floor:.0f} "
                  f"({'met' if each >= floor else 'NOT met'}); peak RSS per worker {rss:.0f} MB (target <= 400: "
                  f"{'met' if rss <= 400 else 'NOT met'})")
    sizes = sorted(results)
    if len(sizes) > 1:
        for mode in (m for m in MODES[3:] if m in results[sizes[0]] and m in results[sizes[-1]]):
            ratio = results[sizes[-1]][mode]["peak_rss_mb"] / results[sizes[0]][mode]["peak_rss_mb"]
            print(f"  peak RSS per worker, {mode}, {sizes[-1]:,} / {sizes[0]:,} patients: {ratio:.2f}x "
                  f"(target < 1.2x: {'met' if ratio < 1.2 else 'NOT met'})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="5000,20000")
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--modes", default=",".join(MODES),
                        help=f"runs to measure, by comma (the floor is always measured); default {','.join(MODES)}")
    parser.add_argument("--dir", type=Path, default=Path("/tmp/pacing-cds-bench"))
    parser.add_argument("--one", nargs=2, metavar=("MODE", "EXPORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        mode, folder = args.one[0], Path(args.one[1])
        out = run_floor(folder, mode == "floor parsed") if mode.startswith("floor") else \
            run_loop(folder) if mode == "loop" else \
            run_dask(folder, workers_of(mode), mode.startswith("store"))
        print(json.dumps(out))
        return 0
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python "
          f"{platform.python_version()}, load average {os.getloadavg()[0]:.1f} at start", file=sys.stderr)
    results: dict[int, dict[str, dict[str, Any]]] = {}
    builds: dict[int, float] = {}
    for n in (int(s) for s in args.sizes.split(",")):
        folder = ensure_export(args.dir, n, args.days)
        builds[n] = build_store(folder) if any(m.startswith("store") for m in args.modes.split(",")) else 0.0
        results[n] = {}
        asked = {"floor", *args.modes.split(",")}
        for mode in (m for m in MODES if m in asked and (m != "floor parsed" or n <= PARSED_MAX)):
            results[n][mode] = r = measure(mode, folder)
            assert r["rows"] == n, f"{mode}: {r['rows']} rows for {n} patients"
            print(f"# {n} {mode}: {r['seconds']:.1f} s, {r['peak_rss_mb']:.0f} MB", file=sys.stderr, flush=True)
    table(results, builds)
    verdicts(results)
    print(f"\nload average at the end {os.getloadavg()[0]:.1f} (2 cores shared with other work)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
