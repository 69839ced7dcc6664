"""`pacing-cds worklist` on a real Dask cluster: one row per patient, the hook's own answer, the files."""

from __future__ import annotations

import csv
import gzip
import json
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pandas as pd

from bench.export import patients
from cds.engine import Knowledge
from tests.conftest import LiveService
from tests.panel.conftest import NOW_AT, Run, worklist
from tests.support import data
from tests.support.examples import SCENARIOS, example
from tests.support.fhir_server import TOKEN, FhirServer

HOOK_NOW = "2026-11-20T09:00:00Z"


def ndjson_ids(folder: Path, kind: str) -> list[str]:
    ids = []
    for path in sorted(folder.glob(f"{kind}*.ndjson*")):
        opener = gzip.open if path.name.endswith(".gz") else open
        with opener(path, "rt") as handle:
            ids.extend(json.loads(line)["id"] for line in handle if line.strip())
    return ids


def csv_rows(out: Path) -> list[dict[str, str]]:
    with open(out / "worklist.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def summary_counts(stderr: str) -> dict[str, int]:
    """The recommendation rows of the summary table printed at the end."""
    found = {m[1]: int(m[2]) for m in re.finditer(r"│ ([a-z-]+)\s+│\s+(\d+) │", stderr)}
    return {code: n for code, n in found.items() if code not in ("needs", "problems")}


def test_the_cluster_run_writes_one_row_per_patient(cluster_run: Run, generated: Path) -> None:
    assert cluster_run.code == 0, cluster_run.stderr
    assert "Traceback" not in cluster_run.stderr
    patient_ids = ndjson_ids(generated, "Patient")
    rows = csv_rows(cluster_run.out)
    assert sorted(r["patient"] for r in rows) == sorted(f"Patient/{pid}" for pid in patient_ids)
    assert f"Pacing worklist: {len(patient_ids)} patients as of 2026-11-20T09:00:00Z" in cluster_run.stderr
    assert "on 2 workers" in cluster_run.stderr
    parquet = pd.read_parquet(cluster_run.out / "worklist.parquet")
    assert list(parquet["patient"]) == [r["patient"] for r in rows]
    assert list(parquet["recommendations"]) == [r["recommendations"] for r in rows]
    assert {"dose_now", "dose_proposed", "adherence", "pain_delta", "flare_weeks", "last_data_day", "red_flags",
            "rule_set_version"} <= set(parquet.columns)
    counted = Counter(code for r in rows for code in r["recommendations"].split() or ["none"])
    assert summary_counts(cluster_run.stderr) == dict(counted)
    assert {"progress", "hold", "step-back", "red-flag", "data-gap"} <= set(counted), "a varied panel"


def test_rows_carry_the_numbers_of_the_patient(cluster_run: Run) -> None:
    rows = {r["patient"]: r for r in csv_rows(cluster_run.out)}
    flagged = [r for r in rows.values() if "red-flag" in r["recommendations"].split()]
    assert flagged and all(r["red_flags"] for r in flagged), "each red flag says why"
    assert all(not r["red_flags"] for r in rows.values() if r not in flagged)
    progress = [r for r in rows.values() if r["recommendations"].split()[:1] == ["progress"]]
    assert progress and all(r["dose_proposed"] and r["dose_proposed"] != r["dose_now"] for r in progress)
    gaps = [r for r in rows.values() if "data-gap" in r["recommendations"].split()]
    assert gaps and all(r["last_data_day"] <= "2026-11-13" for r in gaps), "no data for a week or more"


def fetch_hook(service: LiveService, http: httpx.Client, body: dict[str, Any]) -> list[str]:
    response = http.post(f"{service.url}/cds-services/pacing-review", json=body, timeout=90)
    assert response.status_code == 200, response.text
    return [card["source"]["topic"]["code"] for card in response.json()["cards"]]


def test_rows_agree_with_the_hook_for_generated_patients(cluster_run: Run, fhir_server: FhirServer,
                                                         live_service: Callable[..., LiveService],
                                                         http: httpx.Client) -> None:
    """One patient of each archetype on a real FHIR server; the hook fetches their data itself. The step Goal
    comes as prefetch: sekmet ignores Goal's `patient` and `lifecycle-status` search parameters (and says so in
    an OperationOutcome), so its answer to that one query is not what a server holding this export returns."""
    chosen: dict[str, list[dict[str, Any]]] = {}
    for name, resources in patients(200, 11, NOW_AT, 90):
        chosen.setdefault(name, resources)
    for resources in chosen.values():  # a transaction per patient: each well within the client's timeout
        fhir_server.load(resources)
    rows = {r["patient"]: r["recommendations"].split() for r in csv_rows(cluster_run.out)}
    # Months of data a patient take sekmet a few seconds to search on a busy machine.
    service = live_service(now=HOOK_NOW, fhir_timeout_s="30", request_deadline_s="60")
    for name, resources in chosen.items():
        pid = resources[0]["id"]
        goals = [r for r in resources if r["resourceType"] == "Goal" and r.get("lifecycleStatus") == "active"]
        body = data.patient_view(pid, {"step-goals": data.searchset(goals)}, fhir_server.base_url, TOKEN)
        assert rows[f"Patient/{pid}"] == fetch_hook(service, http, body), name


def write_examples_export(folder: Path) -> dict[str, dict[str, Any]]:
    """Every pacing-review example's prefetch as a Bulk Data export; returns the requests by patient id."""
    requests = {}
    by_type: dict[str, list[dict[str, Any]]] = {}
    for name in SCENARIOS:
        body, expected = example(name)
        if expected["service"] != "pacing-review":
            continue
        requests[body["context"]["patientId"]] = body
        for value in body["prefetch"].values():
            if value is None:
                continue
            entries = [e["resource"] for e in value.get("entry", [])] if value["resourceType"] == "Bundle" else [value]
            for resource in entries:
                by_type.setdefault(resource["resourceType"], []).append(resource)
    folder.mkdir()
    for kind, resources in by_type.items():
        (folder / f"{kind}.ndjson").write_text("".join(json.dumps(r) + "\n" for r in resources))
    return requests


def test_rows_agree_with_the_hook_for_every_example(tmp_path: Path, live_service: Callable[..., LiveService],
                                                    http: httpx.Client, knowledge: Knowledge) -> None:
    """On the default local cluster: each example's row names exactly the cards its request gets."""
    requests = write_examples_export(tmp_path / "export")
    run = worklist(tmp_path / "export", tmp_path / "out", "--workers", "2")
    assert run.code == 0, run.stderr
    assert "Traceback" not in run.stderr, "the local cluster stops without a traceback"
    rows = {r["patient"]: r["recommendations"].split() for r in csv_rows(run.out)}
    assert set(rows) == {f"Patient/{pid}" for pid in requests}
    service = live_service(now=HOOK_NOW)
    keys = set(knowledge.prefetch)
    for pid, body in requests.items():
        failed = any(isinstance(v, dict) and v.get("resourceType") == "OperationOutcome"
                     for v in body["prefetch"].values())
        if set(body["prefetch"]) != keys or failed:
            continue  # a prefetch request that failed has no equivalent in an export that has the file
        assert rows[f"Patient/{pid}"] == fetch_hook(service, http, body), pid
