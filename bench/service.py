"""Latency, throughput and memory of the service against the framework's floor, measured in one run.

    .venv/bin/python bench/service.py                       # the full run (about 15 minutes on 2 cores)
    .venv/bin/python bench/service.py --quick               # a smaller run (fewer requests), same tables
    .venv/bin/python bench/service.py --models 2x1,2x2,2x4  # only the 90-day load, by gunicorn model

1. In-process time per stage (parse, features, rules, cards) for requests of 1 week, 90 days, 1 year, 3 years.
2. End to end on 127.0.0.1 at concurrency 1, 4 and 16: p50, p95, p99 and throughput, for the service as
   `pacing-cds serve` runs it (2 workers, its default threads) and for a bare Flask endpoint that only parses the
   same body (the floor: gunicorn's threaded worker, 2 workers x 4 threads).
3. Resident memory of each worker along 100,000 requests.
Prints the tables and the targets with what was measured.
"""

from __future__ import annotations

import argparse
import http.client
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.requests import NOW, SIZES, observations, patient_view  # noqa: E402
from tests.support.processes import die_with_parent  # noqa: E402

PATH = "/cds-services/pacing-review"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------- 1. in process


def stages(bodies: dict[str, bytes], repeat: int) -> list[dict[str, Any]]:
    """Median seconds per stage of the one call path (cds.services.pipeline.answer), parse included."""
    from cds.collector import settle_heap
    from cds.engine import RuleEngine, load_knowledge
    from cds.fhir.client import FhirClient
    from cds.fhir.typed import decode_request
    from cds.services import services_of
    from cds.services.pipeline import answer

    engine = RuleEngine(load_knowledge(ROOT / "rules"))
    service = services_of(engine.knowledge)["pacing-review"]
    fhir = FhirClient(3.0, 10)
    now = datetime.fromisoformat(NOW.replace("Z", "+00:00"))
    settle_heap()  # as each gunicorn worker of `pacing-cds serve` does once the application is built
    names = ("parse", "features", "rules", "cards")
    rows = []
    for name, raw in bodies.items():
        totals: dict[str, list[float]] = {stage: [] for stage in names}
        for i in range(repeat + 3):
            t0 = time.perf_counter()
            body = decode_request(raw, service.typed_keys, service.prefetch_keys)  # as the service reads a body
            timings: dict[str, float] = {"json": time.perf_counter() - t0}
            answered = answer(service, body, engine, fhir, now, stages=timings)
            orjson.dumps(answered.outcome.response.to_json())
            if i >= 3:  # warm-up excluded
                totals["parse"].append(timings["json"] + timings["validate"] + timings["prefetch"])
                for stage in ("features", "rules", "cards"):
                    totals[stage].append(timings[stage])
        row = {"name": name, "observations": observations(orjson.loads(raw)), "kb": len(raw) / 1024}
        row.update({stage: statistics.median(values) * 1000 for stage, values in totals.items()})
        row["total"] = sum(row[s] for s in totals)
        rows.append(row)
    fhir.close()
    return rows


# ---------------------------------------------------------------- 2. over HTTP


class Server:
    def __init__(self, kind: str, workdir: Path, workers: int = 2, threads: int | None = None) -> None:
        """The service as `pacing-cds serve` runs it (its default threads per worker unless `threads`), or the
        floor: bare Flask under gunicorn's threaded worker, 2 workers x 4 threads."""
        self.port = free_port()
        self.workers_count, self.threads = workers, threads
        env = {k: v for k, v in os.environ.items() if not k.startswith("PACING_CDS_")}
        env.update({"PACING_CDS_PORT": str(self.port), "PACING_CDS_WORKERS": str(workers),
                    "PACING_CDS_NOW": NOW, "PACING_CDS_LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT),
                    "PACING_CDS_DATABASE_URL": f"sqlite:///{workdir / f'{kind}.db'}"})
        if threads is not None:
            env["PACING_CDS_THREADS"] = str(threads)
        binary = Path(sys.executable).parent
        if kind.startswith("service"):
            args = [str(binary / "pacing-cds"), "serve"]
        else:
            args = [str(binary / "gunicorn"), "-k", "gthread", "-w", "2", "--threads", "4", "--no-control-socket",
                    "-b", f"127.0.0.1:{self.port}", "--log-level", "warning", "bench.floor:app"]
        self.log = open(workdir / f"{kind}.log", "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(args, env=env, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT,
                                     preexec_fn=die_with_parent)
        deadline = time.monotonic() + 60
        while True:
            try:
                post(self.port, b'{"hook": "x"}')
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"{kind} did not start") from None
                time.sleep(0.2)

    def workers(self) -> list[int]:
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        return [int(pid) for pid in children]

    def model(self) -> str:
        from cds.settings import Settings

        threads = self.threads if self.threads is not None else Settings.model_fields["threads"].default
        return f"{self.workers_count} workers x {threads} threads"

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(timeout=30)
        self.log.close()


def post(port: int, body: bytes, conn: http.client.HTTPConnection | None = None) -> int:
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("POST", PATH, body, {"Content-Type": "application/json"})
    response = conn.getresponse()
    response.read()
    if own:
        conn.close()
    return response.status


def load(port: int, body: bytes, concurrency: int, total: int) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()

    def client(count: int) -> None:
        nonlocal errors
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine = []
        bad = 0
        for _ in range(count):
            t0 = time.perf_counter()
            if post(port, body, conn) != 200:
                bad += 1
            mine.append(time.perf_counter() - t0)
        conn.close()
        with lock:
            latencies.extend(mine)
            errors += bad

    for _ in range(min(20, total)):  # warm-up
        post(port, body)
    threads = [threading.Thread(target=client, args=(total // concurrency,)) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(len(latencies) * p))] * 1000

    return {"p50": pct(0.50), "p95": pct(0.95), "p99": pct(0.99), "rps": len(latencies) / elapsed,
            "errors": errors, "n": len(latencies)}


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def memory(server: Server, body: bytes, total: int, checkpoints: int = 5) -> list[tuple[int, list[float]]]:
    samples = [(0, [rss_mb(pid) for pid in server.workers()])]
    done = 0
    step = total // checkpoints
    while done < total:
        load(server.port, body, 8, step)
        done += step
        samples.append((done, [rss_mb(pid) for pid in server.workers()]))
    return samples


# ---------------------------------------------------------------- report


def models(specs: str, body: bytes, requests_per_level: dict[int, int]) -> None:
    """The service under each workers x threads model (e.g. "2x1,2x4"), 90-day requests at concurrency 1, 4, 16."""
    workdir = Path(tempfile.mkdtemp(prefix="pacing-cds-bench-"))
    print("90-day patient-view over HTTP by gunicorn model, asyncio front (latency in ms)\n")
    print("| workers x threads | concurrency | p50 | p95 | p99 | req/s | errors |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for spec in specs.split(","):
        workers, threads = (int(n) for n in spec.lower().split("x"))
        server = Server(f"service-{workers}x{threads}", workdir, workers, threads)
        try:
            for c, count in requests_per_level.items():
                r = load(server.port, body, c, count)
                print(f"| {workers} x {threads} | {c} | {r['p50']:.1f} | {r['p95']:.1f} | {r['p99']:.1f} | "
                      f"{r['rps']:.0f} | {r['errors']:.0f} |", flush=True)
        finally:
            server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer requests: a smoke run of the same tables")
    parser.add_argument("--models", metavar="WxT,...",
                        help="only compare gunicorn models, e.g. 1x1,2x1,2x2,2x4 (workers x threads)")
    args = parser.parse_args()
    scale = 0.1 if args.quick else 1.0
    requests_per_level = {1: int(500 * scale) or 20, 4: int(2000 * scale) or 40, 16: int(4000 * scale) or 80}
    if args.models:
        models(args.models, orjson.dumps(patient_view(SIZES["90 days"])), requests_per_level)
        return 0
    memory_requests = int(100_000 * scale)
    bodies = {name: orjson.dumps(patient_view(days)) for name, days in SIZES.items()}

    print(f"Pacing CDS service benchmark, {datetime.now().date()}, Python {platform.python_version()}, "
          f"{platform.machine()}, {os.cpu_count()} CPUs\n")
    rows = stages(bodies, repeat=int(50 * scale) or 5)
    print("In process, median ms per request (parse = JSON + wire models + prefetch checks)\n")
    print("| request | Observations | KB | parse | features | rules | cards | total |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['name']} | {r['observations']:,} | {r['kb']:,.0f} | {r['parse']:.2f} | {r['features']:.2f} | "
              f"{r['rules']:.2f} | {r['cards']:.2f} | {r['total']:.2f} |")

    workdir = Path(tempfile.mkdtemp(prefix="pacing-cds-bench-"))
    service, floor = Server("service", workdir), Server("floor", workdir)
    results: dict[tuple[str, str, int], dict[str, float]] = {}
    try:
        for name, body in bodies.items():
            levels = (1, 4, 16) if name == "90 days" else (1,)
            for c in levels:
                count = requests_per_level[c] if name == "90 days" else max(20, requests_per_level[1] // 2)
                results[("service", name, c)] = load(service.port, body, c, count)
                results[("floor", name, c)] = load(floor.port, body, c, count)
        print(f"\nEnd to end over HTTP on 127.0.0.1, service {service.model()}, floor 2 workers x 4 threads "
              "(latency in ms)\n")
        print("| request | concurrency | service p50 | p95 | p99 | req/s | floor p50 | p95 | p99 | req/s "
              "| p50 / floor | req/s / floor |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for (kind, name, c), s in results.items():
            if kind != "service":
                continue
            f = results[("floor", name, c)]
            print(f"| {name} | {c} | {s['p50']:.1f} | {s['p95']:.1f} | {s['p99']:.1f} | {s['rps']:.0f} | "
                  f"{f['p50']:.1f} | {f['p95']:.1f} | {f['p99']:.1f} | {f['rps']:.0f} | {s['p50'] / f['p50']:.1f} x | "
                  f"{s['rps'] / f['rps']:.0%} |")
        errors = sum(r["errors"] for r in results.values())
        samples = memory(service, bodies["90 days"], memory_requests)
    finally:
        service.stop()
        floor.stop()
    print(f"\nResident memory per worker (MB) along {memory_requests:,} requests of 90 days\n")
    print("| requests | " + " | ".join(f"worker {i + 1}" for i in range(len(samples[0][1]))) + " |")
    print("|---:|" + "---:|" * len(samples[0][1]))
    for done, values in samples:
        print(f"| {done:,} | " + " | ".join(f"{v:.0f}" for v in values) + " |")

    r90, r1y, r3y = (results[("service", n, 1)] for n in ("90 days", "1 year", "3 years"))
    obs = {r["name"]: r["observations"] for r in rows}
    marginal = (r3y["p50"] - r1y["p50"]) / (obs["3 years"] - obs["1 year"])
    best = max(results[("service", "90 days", c)]["rps"] for c in (1, 4, 16))
    best_floor = max(results[("floor", "90 days", c)]["rps"] for c in (1, 4, 16))
    first, last = samples[1][1], samples[-1][1]
    growth = max(b - a for a, b in zip(first, last))
    targets = [
        ("90-day p50 at concurrency 1", f"{r90['p50']:.1f} ms", "<= 10 ms", r90["p50"] <= 10),
        ("90-day p99 at concurrency 1", f"{r90['p99']:.1f} ms", "<= 30 ms", r90["p99"] <= 30),
        ("marginal cost per Observation (1 y -> 3 y)", f"{marginal:.4f} ms", "<= 0.03 ms", marginal <= 0.03),
        ("throughput, 2 workers (best concurrency)", f"{best:.0f} req/s", ">= 150 req/s", best >= 150),
        ("throughput against the floor", f"{best / best_floor:.0%}", ">= 50 %", best / best_floor >= 0.5),
        ("memory per worker", f"{max(last):.0f} MB", "<= 150 MB", max(last) <= 150),
        (f"memory growth after the first {samples[1][0]:,} requests", f"{growth:+.1f} MB", "flat (< 10 MB)",
         growth < 10),
        ("errors (non-200 answers)", str(errors), "0", errors == 0),
    ]
    f90 = results[("floor", "90 days", 1)]
    in90, in3y = (next(r["total"] for r in rows if r["name"] == n) for n in ("90 days", "3 years"))
    targets += [  # closing in on the floor
        ("90-day p50 at concurrency 1 / floor's p50", f"{r90['p50'] / f90['p50']:.1f} x", "<= 3.0 x",
         r90["p50"] <= 3 * f90["p50"]),
        ("90-day p99 at concurrency 1 / floor's p99", f"{r90['p99'] / f90['p99']:.1f} x", "<= 3.0 x",
         r90["p99"] <= 3 * f90["p99"]),
        ("best throughput / floor's best", f"{best / best_floor:.0%}", ">= 45 %", best / best_floor >= 0.45),
        ("in process, 90-day request", f"{in90:.2f} ms", "<= 1.5 ms", in90 <= 1.5),
        ("in process, 3-year request", f"{in3y:.2f} ms", "<= 12 ms", in3y <= 12),
    ]
    print("\nTargets\n")
    print("| measure | measured | target | met |")
    print("|---|---:|---:|---|")
    for name, value, target, met in targets:
        print(f"| {name} | {value} | {target} | {'yes' if met else 'NO'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
