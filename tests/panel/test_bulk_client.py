"""The worklist straight from a FHIR server: a Group's Bulk Data $export from a real sekmet-fhir process, authorised
by SMART Backend Services with a real signed client assertion, then evaluated on a real Dask cluster; a token
that expired is renewed; a run killed after kick-off or mid-download continues its job; a job the server no
longer has is started again; no token reaches the terminal or the output files."""

from __future__ import annotations

import json
import os
import subprocess
import time as clock
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization

from bench.export import patient
from cds.panel import manifest as manifest_file
from cds.panel.bulk import STATE, BulkClient, BulkError, Job, run_export
from cds.panel.smart import TokenSource, load_client
from cds.panel.source import TYPES
from tests.panel.conftest import NOW, NOW_AT, PACING_CDS
from tests.support.dask_cluster import DaskCluster
from tests.support.fhir_server import FhirServer, SmartClient

pytestmark = pytest.mark.slow  # runs exports against a FHIR server

MEMBERS, OTHERS = 3, 2


@pytest.fixture(scope="module")
def smart_client() -> SmartClient:
    return SmartClient.generate("pacing-cds-worklist", "RS384")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, smart_client: SmartClient) -> Iterator[FhirServer]:
    """sekmet with SMART Backend Services (the static token only loads the data), a panel of MEMBERS patients
    and OTHERS patients outside it."""
    fhir = FhirServer(tmp_path_factory.mktemp("sekmet-bulk-client"), smart_client=smart_client)
    people = [patient(i, 5, NOW_AT, 30)[1] for i in range(MEMBERS + OTHERS)]
    fhir.load([resource for resources in people for resource in resources])
    fhir.load_group("panel-1", [resources[0]["id"] for resources in people[:MEMBERS]])
    fhir.members = {resources[0]["id"] for resources in people[:MEMBERS]}  # type: ignore[attr-defined]
    yield fhir
    fhir.stop()


def key_file(client: SmartClient, folder: Path) -> Path:
    path = folder / "client-key.pem"
    path.write_bytes(client.private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                      serialization.NoEncryption()))
    path.chmod(0o600)
    return path


def tokens_for(server: FhirServer, client: SmartClient, http: httpx.Client, folder: Path) -> TokenSource:
    source = TokenSource(http, server.base_url, load_client(client.client_id, key_file(client, folder), client.kid),
                         TYPES)
    source.discover()
    return source


def killed_after(job: Job, folder: Path) -> None:
    """The export folder as a run killed once the job was known leaves it: the job's state, nothing else."""
    folder.mkdir()
    (folder / STATE).write_text(json.dumps({"status_url": job.status_url, "started": job.started}))


def client_of(http: httpx.Client, server: FhirServer, client: SmartClient, folder: Path) -> BulkClient:
    """A Bulk Data client of the server, authorised as `client`."""
    return BulkClient(http, server.base_url, tokens_for(server, client, http, folder))


def finished_and_killed(client: BulkClient, folder: Path) -> dict[str, Any]:
    """A Group export the server has finished, left as a run killed before its download leaves it; its status."""
    job = client.start("panel-1", TYPES)
    status = client.wait(job)
    killed_after(job, folder)
    return status


def test_a_groups_worklist_straight_from_the_fhir_server(tmp_path: Path, server: FhirServer,
                                                         smart_client: SmartClient, dask_cluster: DaskCluster) -> None:
    out = tmp_path / "out"
    run = subprocess.run([str(PACING_CDS), "worklist", "--fhir-server", server.base_url, "--group", "panel-1",
                          "--client-id", smart_client.client_id, "--private-key", str(key_file(smart_client, tmp_path)),
                          "--key-id", smart_client.kid, "--out", str(out), "--now", NOW,
                          "--scheduler", dask_cluster.address], capture_output=True, text=True, timeout=600,
                         stdin=subprocess.DEVNULL)
    assert run.returncode == 0, run.stderr[-3000:]
    with open(out / "worklist.csv") as handle:
        patients = {line.split(",", 1)[0] for line in handle.read().splitlines()[1:]}
    assert patients == {f"Patient/{pid}" for pid in server.members}  # type: ignore[attr-defined]
    saved = json.loads((out / "export" / manifest_file.NAME).read_text())
    assert "Group/panel-1/$export" in saved["request"] and saved["output"]
    assert not (out / "export" / STATE).exists(), "a finished job leaves no state to continue"
    assert "eyJ" not in run.stderr + run.stdout, "no token or assertion on the terminal"
    assert not any("eyJ" in path.read_text(errors="replace") for path in (out / "export").iterdir())


def test_an_unknown_group_stops_the_run_with_the_servers_reason(tmp_path: Path, server: FhirServer,
                                                                smart_client: SmartClient) -> None:
    run = subprocess.run([str(PACING_CDS), "worklist", "--fhir-server", server.base_url, "--group", "no-such-group",
                          "--client-id", smart_client.client_id, "--private-key", str(key_file(smart_client, tmp_path)),
                          "--out", str(tmp_path / "out"), "--now", NOW], capture_output=True, text=True, timeout=300,
                         stdin=subprocess.DEVNULL)
    assert run.returncode == 1
    assert "the export was not started: 404" in run.stderr and "Traceback" not in run.stderr


def test_an_expired_token_is_renewed_once_and_the_request_answered(tmp_path: Path, smart_client: SmartClient) -> None:
    """A SMART-only server whose tokens live 2 s; the client's clock is made to lag so that it sends a token the
    server has let expire: the 401 drops it, a new one is asked for, and the request is answered."""
    fhir = FhirServer(tmp_path / "sekmet", smart_client=smart_client, static_token=False, token_lifetime_s=2)
    try:
        lag = [0.0]
        with httpx.Client(timeout=30.0) as http:
            tokens = tokens_for(fhir, smart_client, http, tmp_path)
            tokens._clock = lambda: clock.time() - lag[0]
            client = BulkClient(http, fhir.base_url, tokens)
            assert client.request("GET", f"{fhir.base_url}/Patient").status_code == 200
            first = tokens.token()
            clock.sleep(2.5)
            lag[0] = 2.5 + 120  # the cached token looks fresh to the client
            assert tokens.token() == first
            assert client.request("GET", f"{fhir.base_url}/Patient").status_code == 200
            assert tokens.token() != first, "the refused token was replaced"
    finally:
        fhir.stop()


def test_a_run_killed_after_kick_off_continues_the_same_job(tmp_path: Path, server: FhirServer,
                                                            smart_client: SmartClient) -> None:
    folder = tmp_path / "export"
    with httpx.Client(timeout=30.0) as http:
        client = client_of(http, server, smart_client, tmp_path)
        job = client.start("panel-1", TYPES)
        killed_after(job, folder)
        notes = run_export(client, folder, "panel-1", TYPES)
    assert "continued the export started earlier" in notes
    assert json.loads((folder / manifest_file.NAME).read_text())["request"].endswith("_type=" + ",".join(TYPES))


def test_a_run_killed_mid_download_keeps_the_files_it_had_and_fetches_the_rest(tmp_path: Path, server: FhirServer,
                                                                               smart_client: SmartClient) -> None:
    folder = tmp_path / "export"
    with httpx.Client(timeout=30.0) as http:
        client = client_of(http, server, smart_client, tmp_path)
        first, *rest = finished_and_killed(client, folder)["output"]
        whole = folder / manifest_file.file_name(first["url"], "output")
        whole.write_text(server.bulk_file(first["url"]).read_text())
        kept = whole.stat().st_mtime_ns
        cut = folder / (manifest_file.file_name(rest[0]["url"], "output") + ".part")
        cut.write_text('{"resourceType": "Obser')  # the download the kill interrupted
        run_export(client, folder, "panel-1", TYPES)
    assert whole.stat().st_mtime_ns == kept, "a file already whole is not fetched again"
    assert not cut.exists()
    for entry in rest:
        name = manifest_file.file_name(entry["url"], "output")
        assert (folder / name).read_text() == server.bulk_file(entry["url"]).read_text()


def test_a_job_the_server_no_longer_has_is_started_again(tmp_path: Path, server: FhirServer,
                                                         smart_client: SmartClient) -> None:
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / STATE).write_text(json.dumps({"status_url": f"{server.base_url}/bulk-status/gone", "started": 0}))
    (folder / "Stale.ndjson").write_text("{}\n")  # an earlier export's file is not this one's
    with httpx.Client(timeout=30.0) as http:
        client = client_of(http, server, smart_client, tmp_path)
        notes = run_export(client, folder, "panel-1", TYPES)
    assert "the export started earlier is gone from the server: a new one was started" in notes
    assert not (folder / "Stale.ndjson").exists()
    assert (folder / manifest_file.NAME).exists()


def test_a_failed_export_asks_to_delete_its_job_and_leaves_no_state(tmp_path: Path, server: FhirServer,
                                                             smart_client: SmartClient) -> None:
    folder = tmp_path / "export"
    with httpx.Client(timeout=30.0) as http:
        client = client_of(http, server, smart_client, tmp_path)
        status = finished_and_killed(client, folder)
        server.bulk_file(status["output"][0]["url"]).unlink()  # a file the server lists but cannot serve
        with pytest.raises(BulkError, match="answered 404") as failed:
            run_export(client, folder, "panel-1", TYPES)
    # Deleting a job needs a delete scope at sekmet, which a read-only client does not ask for: the error says so.
    assert "the job could not be deleted on the server (answered 403)" in str(failed.value)
    assert not (folder / STATE).exists()


def test_without_a_group_every_patient_is_exported(tmp_path: Path, server: FhirServer,
                                                   smart_client: SmartClient) -> None:
    folder = tmp_path / "export"
    with httpx.Client(timeout=30.0) as http:
        client = client_of(http, server, smart_client, tmp_path)
        run_export(client, folder, None, TYPES)
    saved = json.loads((folder / manifest_file.NAME).read_text())
    assert "/Patient/$export" in saved["request"]
    [patients] = [manifest_file.file_name(o["url"], "output") for o in saved["output"] if o["type"] == "Patient"]
    ids = {json.loads(line)["id"] for line in (folder / patients).read_text().splitlines() if line.strip()}
    assert ids > server.members, "patients outside the panel too"  # type: ignore[attr-defined]


def test_the_source_can_come_from_the_environment(tmp_path: Path, server: FhirServer, smart_client: SmartClient,
                                                  dask_cluster: DaskCluster) -> None:
    """PACING_CDS_BULK_* name the server, the Group and the client when the command is given no folder."""
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PACING_CDS_", "DASK_"))} | {
        "PACING_CDS_BULK_FHIR_SERVER": server.base_url, "PACING_CDS_BULK_GROUP": "panel-1",
        "PACING_CDS_BULK_CLIENT_ID": smart_client.client_id,
        "PACING_CDS_BULK_PRIVATE_KEY": str(key_file(smart_client, tmp_path)), "PACING_CDS_BULK_KEY_ID": smart_client.kid}
    run = subprocess.run([str(PACING_CDS), "worklist", "--out", str(out), "--now", NOW, "--scheduler",
                          dask_cluster.address], env=env, capture_output=True, text=True, timeout=600,
                         stdin=subprocess.DEVNULL)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Group/panel-1/$export" in json.loads((out / "export" / manifest_file.NAME).read_text())["request"]
    with open(out / "worklist.csv") as handle:
        patients = {line.split(",", 1)[0] for line in handle.read().splitlines()[1:]}
    assert patients == {f"Patient/{pid}" for pid in server.members}  # type: ignore[attr-defined]
