"""An export folder with the Bulk Data status response saved beside it (manifest.json): a type asked for with no file
is none recorded, a type never asked for is not exported (every row says it could not be read), a file the
manifest lists but the folder lacks is lost, the server's error files are reported, and a manifest that cannot be
used is said and never read as "none recorded"."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from cds.panel import manifest
from cds.panel.source import discover
from tests.panel.conftest import good_export, worklist
from tests.support.dask_cluster import DaskCluster

BASE = "https://ehr.example.org/fhir"


def status(types: list[str] | None, outputs: list[tuple[str, str]], errors: tuple[str, ...] | list[str] = ()
           ) -> dict[str, Any]:
    """A Bulk Data status response naming these files (by their names in the folder)."""
    request = f"{BASE}/Group/panel-1/$export" + (f"?_type={','.join(types)}" if types is not None else "")
    return {"transactionTime": "2026-11-20T08:00:00Z", "request": request, "requiresAccessToken": True,
            "output": [{"type": kind, "url": f"{BASE}/bulk/files/{name}"} for kind, name in outputs],
            "error": [{"type": "OperationOutcome", "url": f"{BASE}/bulk/files/{name}"} for name in errors]}


def renamed(folder: Path) -> list[tuple[str, str]]:
    """Give each file a name that announces no type (as many servers name them), returning (type, name)."""
    outputs = []
    for index, path in enumerate(sorted(folder.glob("*.ndjson"))):
        name = f"{index + 1}.ndjson"
        path.rename(folder / name)
        outputs.append((path.name.split(".")[0], name))
    return outputs


def rows_of(out: Path) -> list[dict[str, str]]:
    with open(out / "worklist.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def problems_of(out: Path) -> list[dict[str, str]]:
    with open(out / "problems.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_types_are_named_by_the_manifest_and_told_apart(tmp_path: Path) -> None:
    folder = tmp_path / "export"
    good_export(folder)
    (folder / "Goal.ndjson").unlink(missing_ok=True)
    outputs = renamed(folder)
    present = {kind for kind, _ in outputs}
    asked = sorted(present | {"Goal"})  # Goal asked for, no file: none recorded; CarePlan never asked for
    outputs.append(("Condition", "lost.ndjson"))  # listed, never downloaded
    (folder / "err.ndjson").write_text(json.dumps({"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": "processing", "diagnostics": "Observation search failed for 3 patients"}]})
        + "\n")
    (folder / manifest.NAME).write_text(json.dumps(status(asked, outputs, ["err.ndjson"])))
    export = discover(folder)
    assert export.type_of("1.ndjson") in present
    assert "Goal" in export.missing_types and "CarePlan" not in export.missing_types
    assert "CarePlan" in export.unread and "Condition" in export.unread
    assert any("CarePlan was not asked for" in note for note in export.notes)
    kinds = {(p.kind, p.file) for p in export.refused}
    assert ("missing-file", "lost.ndjson") in kinds and ("export-error", "err.ndjson") in kinds
    assert not any(part.name == "err.ndjson" for part in export.parts), "an error file is not read as data"


def test_without_a_manifest_a_missing_type_is_none_recorded_and_the_report_says_so(tmp_path: Path) -> None:
    good_export(tmp_path / "export")
    export = discover(tmp_path / "export")
    assert "CarePlan" in export.missing_types and not export.unread
    assert any("no manifest.json in the folder" in note for note in export.notes)


@pytest.mark.parametrize(("text", "why"), [
    ("{not json", "not JSON (unexpected character, expected a string key)"),
    ("[]", "not a JSON object"),
    ('{"output": {"type": "Patient"}}', "output is not a list"),
    ('{"output": [{"type": "Patient"}]}', "output[0] has no type and url"),
    ('{"output": [{"type": "Patient", "url": "https://x.example/files/"}]}', "output[0].url names no file"),
    ('{"output": [], "request": 7}', "request is not a URL"),
])
def test_a_manifest_that_cannot_be_used_is_reported_and_no_type_is_read_as_none(tmp_path: Path, text: str,
                                                                                why: str) -> None:
    folder = tmp_path / "export"
    good_export(folder)
    (folder / manifest.NAME).write_text(text)
    export = discover(folder)
    assert [p.message for p in export.refused if p.kind == "manifest"] == [f"not used: {why}"]
    assert export.missing_types == []
    assert "CarePlan" in export.unread and "CarePlan" in export.unknown


@pytest.mark.parametrize("url", [f"{BASE}/files/..%2F..%2Fsecret", f"{BASE}/files/..", f"{BASE}/files/%2e%2e",
                                 f"{BASE}/files/a%5Cb", f"{BASE}/files/a%00b"])
def test_a_file_url_reaches_no_other_folder(url: str) -> None:
    with pytest.raises(manifest.ManifestError, match="names no file"):
        manifest.parse(json.dumps({"output": [{"type": "Patient", "url": url}]}).encode())


def test_a_request_without_type_asked_for_every_type() -> None:
    assert manifest.parse(json.dumps(status(None, [("Patient", "a.ndjson")])).encode()).asked is None
    both = manifest.parse(json.dumps({"output": [], "request": f"{BASE}/$export?_type=Patient&_type=Goal,"}).encode())
    assert both.asked == frozenset({"Patient", "Goal"})


def test_a_manifest_run_says_what_was_not_exported_and_reports_the_servers_errors(tmp_path: Path,
                                                                                  dask_cluster: DaskCluster) -> None:
    folder = tmp_path / "export"
    good = good_export(folder)
    outputs = [(kind, name) for kind, name in renamed(folder) if kind != "ServiceRequest"]
    for path in folder.glob("*.ndjson"):
        if path.name not in {name for _, name in outputs}:
            path.unlink()  # ServiceRequest was never asked for: no file
    (folder / "errors.ndjson").write_text(json.dumps({"resourceType": "OperationOutcome", "issue": [
        {"severity": "warning", "code": "incomplete", "diagnostics": "CarePlan export truncated"}]}) + "\n")
    asked = sorted({kind for kind, _ in outputs} | {"Goal", "CarePlan"})
    (folder / manifest.NAME).write_text(json.dumps(status(asked, outputs, ["errors.ndjson"])))
    run = worklist(folder, tmp_path / "out", "--scheduler", dask_cluster.address)
    assert run.code == 0, run.stderr[-3000:]
    assert "ServiceRequest was not asked for" in run.stderr.replace("\n", " ")
    rows = rows_of(run.out)
    assert {r["patient"] for r in rows} == {f"Patient/{p}" for p in good}
    # Orders unknown (an order may be the plan): every row says so, and none raises a dose.
    assert all(r["note"] == "could not be read: ServiceRequest" for r in rows), [r["note"] for r in rows]
    assert not any(code in r["recommendations"].split() for r in rows for code in ("progress", "start"))
    errors = [p for p in problems_of(run.out) if p["kind"] == "export-error"]
    assert [(p["file"], p["line"]) for p in errors] == [("errors.ndjson", "1")]
    assert "CarePlan export truncated" in errors[0]["message"]
