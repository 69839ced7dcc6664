"""The Bulk Data client against faults a real sekmet-fhir cannot produce, put in its way by a proxy process
(tests/support/bulk_proxy.py): a status URL and files answering 429 then 503 before they answer, a status that
stays 503, files on another origin than the FHIR server, an error file, a status response that is no manifest."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from bench.export import patient
from cds.panel import manifest as manifest_file
from cds.panel.bulk import MAX_TRANSIENT, STATE, BulkClient, BulkError, run_export
from cds.panel.source import TYPES
from tests.panel.conftest import NOW, NOW_AT, PACING_CDS
from tests.panel.test_bulk_client import key_file, tokens_for
from tests.support.bulk_proxy import ERROR_TEXT
from tests.support.fhir_server import FhirServer, SmartClient
from tests.support.processes import ServerProcess, free_port

pytestmark = pytest.mark.slow  # runs exports against a FHIR server behind a faulty proxy

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def smart_client() -> SmartClient:
    return SmartClient.generate("pacing-cds-faults", "RS384")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, smart_client: SmartClient) -> Iterator[FhirServer]:
    fhir = FhirServer(tmp_path_factory.mktemp("sekmet-bulk-faults"), smart_client=smart_client)
    people = [patient(i, 5, NOW_AT, 20)[1] for i in range(3)]
    fhir.load([resource for resources in people for resource in resources])
    fhir.load_group("panel-1", [resources[0]["id"] for resources in people])
    yield fhir
    fhir.stop()


class Proxy:
    def __init__(self, base_url: str, files_port: int, log: Path) -> None:
        self.base_url, self.files_port, self.log = base_url, files_port, log

    def requests(self) -> list[tuple[int, str, str, bool, int]]:
        """(port, method, path, whether it carried Authorization, status) of every request seen."""
        seen = []
        for line in self.log.read_text().splitlines() if self.log.exists() else []:
            port, method, path, auth, status = line.split()
            seen.append((int(port), method, path, auth == "auth=yes", int(status)))
        return seen


@pytest.fixture()
def proxy(tmp_path: Path, server: FhirServer) -> Iterator[Callable[[str], Proxy]]:
    started: list[ServerProcess] = []

    def start(mode: str) -> Proxy:
        port, files_port, log = free_port(), free_port(), tmp_path / f"proxy-{mode}.log"
        process = ServerProcess([sys.executable, "-m", "tests.support.bulk_proxy", str(port), str(files_port),
                                 server.base_url, str(server.data_dir), mode, str(log)],
                                env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}, cwd=ROOT,
                                log_path=tmp_path / f"proxy-{mode}.out")
        base = server.base_url.replace(server.base_url.split("/")[2], f"127.0.0.1:{port}")
        process.wait_ready(f"{base}/metadata")
        started.append(process)
        return Proxy(base, files_port, log)

    yield start
    for process in started:
        process.stop()


def export_through(proxy: Proxy, server: FhirServer, client: SmartClient, folder: Path,
                   waits: list[float], at_most_s: float = 1.0, said: list[str] | None = None) -> list[str]:
    def sleep(seconds: float) -> None:
        waits.append(seconds)
        time.sleep(min(seconds, at_most_s))

    with httpx.Client(timeout=30.0) as http:
        tokens = tokens_for(server, client, http, folder.parent)
        bulk = BulkClient(http, proxy.base_url, tokens, (said if said is not None else []).append, sleep=sleep)
        return run_export(bulk, folder, "panel-1", TYPES)


def test_a_busy_server_is_asked_again_after_retry_after_and_the_export_completes(
        tmp_path: Path, server: FhirServer, smart_client: SmartClient, proxy: Callable[[str], Proxy]) -> None:
    busy = proxy("busy")
    waits: list[float] = []
    said: list[str] = []
    export_through(busy, server, smart_client, tmp_path / "export", waits, said=said)
    saved = json.loads((tmp_path / "export" / manifest_file.NAME).read_text())
    names = {manifest_file.file_name(entry["url"], "output") for entry in saved["output"]}
    assert names and all((tmp_path / "export" / name).stat().st_size > 0 for name in names)
    assert said[-1].startswith(f"downloaded {len(names)} of {len(names)} files"), said  # the progress shown
    seen = [(path, status) for _, method, path, _, status in busy.requests() if method == "GET"]
    for kind in ("/bulk-status/", "/bulk-files/"):
        answers = [status for path, status in seen if kind in path]
        assert 429 in answers and 503 in answers and 200 in answers, (kind, answers)
    assert 1.0 in waits, "the server's Retry-After was honoured"
    assert not list((tmp_path / "export").glob("*.part")), "no partial file is left"


def test_files_on_another_origin_are_fetched_without_the_token_and_the_notes_say_so(
        tmp_path: Path, server: FhirServer, smart_client: SmartClient, proxy: Callable[[str], Proxy]) -> None:
    elsewhere = proxy("elsewhere")
    notes = export_through(elsewhere, server, smart_client, tmp_path / "export", [])
    assert any("another origin" in note and "without the access token" in note for note in notes), notes
    seen = elsewhere.requests()
    files = [r for r in seen if r[0] == elsewhere.files_port]
    assert files and all(status == 200 for *_, status in files)
    assert not any(auth for _, _, _, auth, _ in files), "the access token never left the FHIR server's origin"
    assert any(auth for port, _, path, auth, _ in seen if port != elsewhere.files_port and "/bulk-status/" in path)
    saved = json.loads((tmp_path / "export" / manifest_file.NAME).read_text())
    for entry in saved["output"]:
        name = manifest_file.file_name(entry["url"], "output")
        job = entry["url"].rsplit("/", 2)[-2]
        assert (tmp_path / "export" / name).read_bytes() == (server.data_dir / "bulk" / job / name).read_bytes()


def test_a_status_that_stays_unavailable_fails_the_run_and_deletes_the_job(
        tmp_path: Path, server: FhirServer, smart_client: SmartClient, proxy: Callable[[str], Proxy]) -> None:
    down = proxy("down")
    waits: list[float] = []
    with pytest.raises(BulkError, match=r"answered 503 \d+ times in a row"):
        export_through(down, server, smart_client, tmp_path / "export", waits, at_most_s=0.0)
    assert len(waits) == MAX_TRANSIENT, "asked again a bounded number of times, not until the day's deadline"
    assert any(method == "DELETE" and "/bulk-status/" in path for _, method, path, _, _ in down.requests())
    assert not (tmp_path / "export" / STATE).exists(), "a failed job is not continued"


def test_the_servers_error_file_is_listed_with_the_problems_of_the_worklist(
        tmp_path: Path, server: FhirServer, smart_client: SmartClient, proxy: Callable[[str], Proxy]) -> None:
    errors = proxy("error-file")
    out = tmp_path / "out"
    run = subprocess.run([str(PACING_CDS), "worklist", "--fhir-server", errors.base_url, "--group", "panel-1",
                          "--client-id", smart_client.client_id, "--private-key", str(key_file(smart_client, tmp_path)),
                          "--key-id", smart_client.kid, "--out", str(out), "--now", NOW, "--workers", "1"],
                         capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    assert run.returncode == 0, run.stderr[-3000:]
    with open(out / "problems.csv", newline="") as handle:
        problems = list(csv.DictReader(handle))
    assert any(p["kind"] == "export-error" and ERROR_TEXT in p["message"] for p in problems), problems
    with open(out / "worklist.csv", newline="") as handle:
        assert len(list(csv.DictReader(handle))) == 3, "the rest of the export is evaluated"


def test_a_status_response_that_is_no_manifest_fails_the_run_and_deletes_the_job(
        tmp_path: Path, server: FhirServer, smart_client: SmartClient, proxy: Callable[[str], Proxy]) -> None:
    broken = proxy("bad-manifest")
    with pytest.raises(BulkError, match="output is not a list"):
        export_through(broken, server, smart_client, tmp_path / "export", [])
    assert any(method == "DELETE" and "/bulk-status/" in path for _, method, path, _, _ in broken.requests())
    assert not list((tmp_path / "export").glob("*.ndjson")), "no file of an export that cannot be read"
