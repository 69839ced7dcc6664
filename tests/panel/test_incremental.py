"""The nightly run: `--since auto` against a real sekmet-fhir process asks only for what changed since the last
run's transactionTime, merges it into the panel's store, and evaluates the whole panel; a change made on the server
between two runs shows in its patient's row, and only there."""

from __future__ import annotations

import csv
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from bench.export import CLINICAL, SNOMED, VERIFICATION, patient
from cds.panel import manifest as manifest_file
from cds.panel import store
from cds.panel.command import hold
from cds.panel.source import SPILL_PREFIX
from tests.panel.conftest import NOW, NOW_AT, PACING_CDS
from tests.panel.test_bulk_client import key_file
from tests.support.fhir_server import FhirServer, SmartClient

pytestmark = pytest.mark.slow  # runs pacing-cds worklist against a FHIR server

MEMBERS = 6


@pytest.fixture(scope="module")
def smart_client() -> SmartClient:
    return SmartClient.generate("pacing-cds-nightly", "ES384")


@pytest.fixture()
def server(tmp_path: Path, smart_client: SmartClient) -> Iterator[FhirServer]:
    """A fresh server for each test (each changes its data): a panel of MEMBERS patients and one outside it."""
    fhir = FhirServer(tmp_path / "sekmet", smart_client=smart_client)
    people = [patient(i, 11, NOW_AT, 30)[1] for i in range(MEMBERS + 1)]
    fhir.load([resource for resources in people for resource in resources])
    fhir.members = [resources[0]["id"] for resources in people[:MEMBERS]]  # type: ignore[attr-defined]
    fhir.load_group("panel-1", fhir.members)  # type: ignore[attr-defined]
    yield fhir
    fhir.stop()


def worklist(server: FhirServer, client: SmartClient, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    run = subprocess.run([str(PACING_CDS), "worklist", "--fhir-server", server.base_url, "--group", "panel-1",
                          "--client-id", client.client_id, "--private-key", str(key_file(client, out.parent)),
                          "--key-id", client.kid, "--out", str(out), "--now", NOW, "--workers", "1", *extra],
                         capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    assert run.returncode == 0, run.stderr[-3000:]
    return run


def rows(out: Path) -> dict[str, dict[str, str]]:
    with open(out / "worklist.csv", newline="") as handle:
        return {row["patient"]: row for row in csv.DictReader(handle)}


def exported_patients(folder: Path) -> set[str]:
    """The patients the resources of the last download belong to."""
    found = set()
    for path in folder.glob("*.ndjson"):
        for line in path.read_text().splitlines():
            resource = json.loads(line)
            ref = resource.get("subject", {}).get("reference") if resource["resourceType"] != "Patient" \
                else f"Patient/{resource['id']}"
            found.add(ref)
    return found


def red_flag(pid: str) -> dict[str, object]:
    """A confirmed, active cauda equina syndrome recorded yesterday."""
    return {"resourceType": "Condition", "id": f"{pid}-new-red-flag",
            "clinicalStatus": {"coding": [{"system": CLINICAL, "code": "active"}]},
            "verificationStatus": {"coding": [{"system": VERIFICATION, "code": "confirmed"}]},
            "code": {"coding": [{"system": SNOMED, "code": "192970008", "display": "Cauda equina syndrome"}]},
            "subject": {"reference": f"Patient/{pid}"}, "recordedDate": "2026-11-19"}


def test_since_auto_fetches_what_changed_and_evaluates_the_whole_panel(tmp_path: Path, server: FhirServer,
                                                                       smart_client: SmartClient) -> None:
    out = tmp_path / "out"
    first = worklist(server, smart_client, out, "--since", "auto")
    assert "a full export" in first.stderr  # no earlier run: --since auto starts from nothing
    before = rows(out)
    members = server.members  # type: ignore[attr-defined]
    assert set(before) == {f"Patient/{pid}" for pid in members}
    held = store.load(out / "store")
    assert held is not None and held.transaction_time

    changed = members[2]
    server.load([red_flag(changed)])
    worklist(server, smart_client, out, "--since", "auto")
    request = json.loads((out / "export" / manifest_file.NAME).read_text())["request"]
    assert parse_qs(urlsplit(request).query)["_since"] == [held.transaction_time]
    assert exported_patients(out / "export") == {f"Patient/{changed}"}, "only what changed was fetched"
    after = rows(out)
    assert set(after) == set(before), "the whole panel is evaluated, not only what changed"
    assert after[f"Patient/{changed}"]["red_flags"] and "red-flag" in after[f"Patient/{changed}"]["recommendations"]
    assert not before[f"Patient/{changed}"]["red_flags"]
    assert {p: r for p, r in after.items() if p != f"Patient/{changed}"} == \
        {p: r for p, r in before.items() if p != f"Patient/{changed}"}
    moved = store.load(out / "store")
    assert moved is not None and moved.transaction_time and moved.transaction_time > held.transaction_time


def test_a_resource_changed_on_the_server_replaces_the_copy_held(tmp_path: Path, server: FhirServer,
                                                                 smart_client: SmartClient) -> None:
    """Upsert by type and id: a red flag entered in error is one Condition, not two, after the next run."""
    out = tmp_path / "out"
    pid = server.members[0]  # type: ignore[attr-defined]
    flag = red_flag(pid)
    server.load([flag])
    worklist(server, smart_client, out)
    assert rows(out)[f"Patient/{pid}"]["red_flags"]
    flag["verificationStatus"] = {"coding": [{"system": VERIFICATION, "code": "entered-in-error"}]}
    server.load([flag])
    worklist(server, smart_client, out, "--since", "auto")
    assert not rows(out)[f"Patient/{pid}"]["red_flags"], "the corrected Condition replaced the red flag"
    held = [r for path in (out / "store").glob("bucket-*.parquet")
            for r in store.pq.read_table(path, columns=["resource"]).column("resource").to_pylist()
            if f"{pid}-new-red-flag" in r]
    assert len(held) == 1 and "entered-in-error" in held[0]


def test_since_an_instant_needs_the_store_of_an_earlier_full_run(tmp_path: Path, server: FhirServer,
                                                                 smart_client: SmartClient) -> None:
    out = tmp_path / "out"
    run = subprocess.run([str(PACING_CDS), "worklist", "--fhir-server", server.base_url, "--group", "panel-1",
                          "--client-id", smart_client.client_id,
                          "--private-key", str(key_file(smart_client, tmp_path)),
                          "--since", "2026-11-01T00:00:00Z", "--out", str(out), "--now", NOW],
                         capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert run.returncode == 1
    assert "run once without --since" in run.stderr and "Traceback" not in run.stderr


def test_a_second_run_on_the_same_folder_stops_and_a_killed_runs_spill_is_removed(tmp_path: Path) -> None:
    """Two nightly runs must not merge into one store at once: the second stops, saying why. A run killed in the
    middle leaves its spill folder (patient data); the next run that holds the folder removes it."""
    out = tmp_path / "out"
    held = hold(out)
    assert held is not None
    run = subprocess.run([str(PACING_CDS), "worklist", "--fhir-server", "http://127.0.0.1:9/fhir", "--out", str(out),
                          "--now", NOW], capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert run.returncode == 1 and "another pacing-cds worklist run is using" in run.stderr, run.stderr
    held.close()
    (out / f"{SPILL_PREFIX}left").mkdir()
    (out / f"{SPILL_PREFIX}left" / "00001-000001.arrow").write_bytes(b"lines of patients")
    again = hold(out)
    assert again is not None and not list(out.glob(f"{SPILL_PREFIX}*"))
    again.close()


def test_a_damaged_store_stops_the_run_with_what_to_do_and_a_full_run_rebuilds_it(
        tmp_path: Path, server: FhirServer, smart_client: SmartClient) -> None:
    out = tmp_path / "out"
    worklist(server, smart_client, out)
    bucket = next((out / "store").glob("bucket-*.parquet"))
    bucket.write_bytes(b"PAR1 not a parquet file PAR1")
    args = [str(PACING_CDS), "worklist", "--fhir-server", server.base_url, "--group", "panel-1",
            "--client-id", smart_client.client_id, "--private-key", str(key_file(smart_client, tmp_path)),
            "--key-id", smart_client.kid, "--out", str(out), "--now", NOW, "--workers", "1", "--since", "auto"]
    run = subprocess.run(args, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    assert run.returncode == 1 and "run without --since to rebuild it" in run.stderr, run.stderr[-2000:]
    assert "Traceback" not in run.stderr
    worklist(server, smart_client, out)  # a full run
    assert set(rows(out)) == {f"Patient/{pid}" for pid in server.members}  # type: ignore[attr-defined]
