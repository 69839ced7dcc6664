"""Proof that the engine is safe under concurrency: threads in one process, and gunicorn workers x threads.

Each run is a separate process, so that a crash of the engine's C core fails the test instead of the session.
PACING_CDS_SAFETY_PATIENTS sets the distinct patients per thread (8 threads, 500 each by default): 2000 gives the
full-size run of 16,000 patients. PACING_CDS_SAFETY_CALLS sets the calls to gunicorn (1,000 by default): 3000 gives
the full-size run.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from cds.engine import Knowledge, RuleEngine
from tests.support.processes import ServerProcess, free_port
from tests.support.stress import NOW, canonical, patient_case

pytestmark = pytest.mark.slow  # serves the engine under gunicorn

ROOT = Path(__file__).resolve().parents[2]
THREADS, PATIENTS = 8, int(os.environ.get("PACING_CDS_SAFETY_PATIENTS", "500"))
ROUNDS = 3
CALLS = int(os.environ.get("PACING_CDS_SAFETY_CALLS", "1000"))


def test_8_threads_distinct_patients(knowledge: Knowledge) -> None:
    result = subprocess.run([sys.executable, "-m", "tests.support.stress", "--threads", str(THREADS),
                             "--per-thread", str(PATIENTS), "--nothing", "5000", "--rounds", str(ROUNDS)],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode in (0, 1), f"engine process died (code {result.returncode}): {result.stderr[-2000:]}"
    report = json.loads(result.stdout)
    assert report["error_count"] == 0, report["errors"]
    assert report["evaluations_threaded"] == THREADS * PATIENTS * ROUNDS
    assert report["crossed"] == 0, "findings crossed patients"
    assert report["mismatches"] == 0, "threaded results differ from the single-threaded run"
    assert report["nothing_matches_findings"] == 0
    assert set(report["codes_seen"]) == {c.rule.conclude.code for c in knowledge.rules}, \
        "the stress reaches every recommendation code"
    rss = report["rss_mb_after_each_round"]
    assert rss[-1] - rss[0] < 5.0, f"resident memory keeps growing: {rss}"
    assert rss[-1] - rss[-2] < 1.0, f"resident memory keeps growing: {rss}"
    assert result.returncode == 0


def test_under_gunicorn_workers_and_threads(tmp_path: Path, knowledge: Knowledge) -> None:
    engine = RuleEngine(knowledge)
    cases = [patient_case(i) for i in range(CALLS)]
    expected = [canonical(engine.evaluate(service, facts, NOW)) for service, facts in cases]
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PACING_CDS_")}
    env.update({"PACING_CDS_DATABASE_URL": f"sqlite:///{tmp_path / 'g.db'}", "PYTHONPATH": str(ROOT)})
    gunicorn = Path(sys.executable).parent / "gunicorn"
    server = ServerProcess([str(gunicorn), "-k", "gthread", "-w", "3", "--threads", "4", "-b", f"127.0.0.1:{port}",
                            "--no-control-socket", "tests.support.engine_wsgi:create()"],
                           env=env, cwd=ROOT, log_path=tmp_path / "gunicorn.log")
    try:
        server.wait_ready(f"http://127.0.0.1:{port}/healthz")
        # A new connection per call, each its own: 16 kept-alive connections could all be accepted by the first
        # worker to boot, and a client pool shared by 16 threads without keep-alive races on closing sockets.
        body_of = [json.dumps({"service": s, "facts": f}).encode() for s, f in cases]

        def call(i: int) -> dict[str, Any]:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30.0)
            try:
                connection.request("POST", "/_stress/evaluate", body=body_of[i],
                                   headers={"Content-Type": "application/json"})
                response = connection.getresponse()
                assert response.status == 200, response.status
                return json.loads(response.read())
            finally:
                connection.close()

        with ThreadPoolExecutor(max_workers=16) as pool:
            answers = list(pool.map(call, range(len(cases))))
        assert server.proc.poll() is None, "gunicorn died"
    finally:
        server.stop()
    log = (tmp_path / "gunicorn.log").read_text()
    assert "SIGSEGV" not in log and "exited with code" not in log and "Traceback" not in log, log[-2000:]
    assert sum(a["crossed"] for a in answers) == 0
    assert [{"codes": a["codes"], "trace": [tuple(t) for t in a["trace"]]} for a in answers] == \
        [{"codes": e["codes"], "trace": [tuple(t) for t in e["trace"]]} for e in expected]
    assert len({a["pid"] for a in answers}) >= 2, "several workers answered (the kernel spreads connections)"
    assert log.count("Booting worker") == 3, "no worker was restarted"
