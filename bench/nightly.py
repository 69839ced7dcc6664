"""The nightly run: a full run of the worklist from a FHIR server against the next night's `--since auto` run.

    .venv/bin/python -m bench.nightly [--patients 400] [--days 90] [--changed 0.05] [--dir /tmp/pacing-cds-nightly]

A real sekmet-fhir process (the tests' pinned one, SMART Backend Services on) is loaded with a Group of generated
patients (bench/export.py). Then `pacing-cds worklist --fhir-server ... --group ...` runs twice on a one-worker
local cluster: in full (no --since: a full export rebuilds the panel's store), then, after a pain score recorded
this morning for a share of the patients (--changed), with `--since auto`. The table gives each run's seconds, the
resources and bytes downloaded, and the rows written: the incremental run fetches what changed only, and still
evaluates the whole panel.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import re
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.export import NRS, patient  # noqa: E402
from tests.support.fhir_server import FhirServer, SmartClient  # noqa: E402

NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
PACING_CDS = ROOT / ".venv" / "bin" / "pacing-cds"


def downloaded(folder: Path) -> tuple[int, int]:
    """(resources, bytes) of the NDJSON files of the last download."""
    files = list(folder.glob("*.ndjson"))
    return sum(path.read_bytes().count(b"\n") for path in files), sum(path.stat().st_size for path in files)


def run(server: FhirServer, client: SmartClient, key: Path, out: Path, *extra: str) -> dict[str, Any]:
    started = time.perf_counter()
    done = subprocess.run([str(PACING_CDS), "worklist", "--fhir-server", server.base_url, "--group", "panel",
                           "--client-id", client.client_id, "--private-key", str(key), "--key-id", client.kid,
                           "--out", str(out), "--now", NOW.isoformat(), "--workers", "1", *extra],
                          capture_output=True, text=True, timeout=3600, stdin=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"the worklist failed:\n{done.stderr[-3000:]}")
    with open(out / "worklist.csv", newline="") as handle:
        rows = sum(1 for _ in csv.DictReader(handle))
    resources, size = downloaded(out / "export")
    evaluated = re.search(r"([0-9.]+) s on \d+ workers", done.stderr)
    return {"seconds": seconds, "resources": resources, "bytes": size, "rows": rows,
            "evaluation": float(evaluated.group(1)) if evaluated else float("nan")}


def a_day_more(pid: str, rng: random.Random) -> list[dict[str, Any]]:
    """A pain score recorded this morning."""
    moment = (NOW - timedelta(hours=2)).isoformat().replace("+00:00", "Z")
    return [{"resourceType": "Observation", "id": f"{pid}-nightly-pain", "status": "final",
             "code": {"coding": [{"system": "http://loinc.org", "code": NRS}]},
             "subject": {"reference": f"Patient/{pid}"}, "effectiveDateTime": moment,
             "valueQuantity": {"value": rng.randint(2, 7), "unit": "{score}", "system": "http://unitsofmeasure.org",
                               "code": "{score}"}}]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=400)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--changed", type=float, default=0.05)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/pacing-cds-nightly"))
    args = parser.parse_args()
    shutil.rmtree(args.dir, ignore_errors=True)
    args.dir.mkdir(parents=True)
    client = SmartClient.generate("pacing-cds-nightly", "ES384")
    key = args.dir / "key.pem"
    from cryptography.hazmat.primitives import serialization

    key.write_bytes(client.private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                     serialization.NoEncryption()))
    key.chmod(0o600)
    print(f"# {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; loading {args.patients} patients x "
          f"{args.days} days into sekmet", file=sys.stderr)
    server = FhirServer(args.dir / "sekmet", smart_client=client)
    try:
        people = [patient(i, 7, NOW, args.days)[1] for i in range(args.patients)]
        for start in range(0, len(people), 50):
            server.load([r for resources in people[start:start + 50] for r in resources])
        ids = [resources[0]["id"] for resources in people]
        server.load_group("panel", ids)
        out = args.dir / "out"
        full = run(server, client, key, out)
        rng = random.Random(7)
        changed = rng.sample(ids, max(1, round(len(ids) * args.changed)))
        edits = [r for pid in changed for r in a_day_more(pid, rng)]
        server.load(edits)
        nightly = run(server, client, key, out, "--since", "auto")
    finally:
        server.stop()
    print(f"{'run':<26} {'s':>7} {'of which evaluating':>19} {'resources fetched':>17} {'MB fetched':>10} "
          f"{'rows':>6}")
    for name, r in ((f"full ({args.patients} patients)", full),
                    (f"--since auto ({len(changed)} changed)", nightly)):
        print(f"{name:<26} {r['seconds']:>7.1f} {r['evaluation']:>19.1f} {r['resources']:>17,} "
              f"{r['bytes'] / 1e6:>10.2f} {r['rows']:>6}")
    share, took = nightly["resources"] / full["resources"], nightly["seconds"] / full["seconds"]
    print(f"\n{len(edits)} resources changed on the server ({len(changed) / len(ids):.0%} of the patients); the "
          f"nightly run fetched {nightly['resources']:,} ({share:.2%} of the full run's) and took {took:.2f}x its time")
    return 0


if __name__ == "__main__":
    sys.exit(main())
