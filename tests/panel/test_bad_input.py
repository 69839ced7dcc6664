"""A damaged export: every bad piece counted and reported with its file and line, the rest still evaluated."""

from __future__ import annotations

import csv
import gzip
import json
import re
from pathlib import Path

import pytest

from bench.export import patient
from cds.cli import main
from cds.panel.source import Part, discover, read_part
from tests.panel.conftest import NOW, NOW_AT, worklist
from tests.support.dask_cluster import DaskCluster
from tests.support.processes import free_port

pytestmark = pytest.mark.slow  # runs pacing-cds worklist


def lines_of(resources: list[dict]) -> list[str]:
    return [json.dumps(r) for r in resources]


def damaged_export(folder: Path) -> set[str]:
    """Three good patients plus damage in every file; no Goal file. Returns the good patients' ids."""
    people = [patient(i, 5, NOW_AT, 30)[1] for i in range(3)]
    ids = {p[0]["id"] for p in people}
    observations = [r for p in people for r in p if r["resourceType"] == "Observation"]
    folder.mkdir()
    patients = lines_of([p[0] for p in people])
    patients.insert(1, '{"resourceType": "Patient", "id": "broken"')  # line 2: cut mid-object
    (folder / "Patient.ndjson").write_text("\n".join(patients) + "\n")
    orphan = dict(observations[0], id="orphan", subject={"reference": "Patient/ghost"})
    no_subject = {k: v for k, v in observations[1].items() if k != "subject"} | {"id": "nosubject"}
    group = dict(observations[2], id="group", subject={"reference": "Group/ward-7"})
    first = [*lines_of(observations[:40]), json.dumps(no_subject), "", json.dumps(orphan), "[1, 2, 3]",
             json.dumps(group), *lines_of(observations[40:80])]
    (folder / "Observation.001.ndjson").write_text("\n".join(first) + "\n")
    whole = gzip.compress(("\n".join(lines_of(observations[80:])) + "\n").encode())
    (folder / "Observation.002.ndjson.gz").write_bytes(whole[: len(whole) * 2 // 3])  # cut short
    rest = [r for p in people for r in p if r["resourceType"] in ("Condition", "ServiceRequest")]
    (folder / "Condition.ndjson").write_text("\n".join(lines_of([r for r in rest if r["resourceType"] == "Condition"])))
    (folder / "ServiceRequest.ndjson").write_text(
        "\n".join(lines_of([r for r in rest if r["resourceType"] == "ServiceRequest"])) + "\n")
    return ids


def test_damage_is_reported_with_file_and_line_and_the_rest_runs(tmp_path: Path, dask_cluster: DaskCluster) -> None:
    good = damaged_export(tmp_path / "export")
    run = worklist(tmp_path / "export", tmp_path / "out", "--scheduler", dask_cluster.address)
    assert run.code == 0, run.stderr
    assert "Traceback" not in run.stderr and "Error" not in run.stderr
    err = run.stderr.replace("\n", " ")
    for expected in ("Patient.ndjson:2: malformed: not JSON",
                     "Observation.001.ndjson:41: no-patient: Observation with no subject",
                     "Observation.001.ndjson:43: unknown-patient: refers to Patient/ghost, which is not in the export",
                     "Observation.001.ndjson:44: malformed: not a FHIR resource",
                     "Observation.001.ndjson:45: no-patient: Observation whose subject is not a Patient reference",
                     "Observation.002.ndjson.gz:",
                     "no Goal file in the export: none recorded for any patient"):
        assert expected in err, expected
    assert "cut-short: gzip stream broken after" in err
    with open(run.out / "problems.csv", newline="") as handle:
        problems = list(csv.DictReader(handle))
    assert sorted(p["kind"] for p in problems) == ["cut-short", "malformed", "malformed", "no-patient", "no-patient",
                                                   "unknown-patient"]
    with open(run.out / "worklist.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {r["patient"] for r in rows} == {f"Patient/{pid}" for pid in good}
    # An Observation file cut short lost lines of patients no one can name: every row says Observation could not be
    # read, and none changes a dose on what is left.
    assert all(r["note"] == "could not be read: Observation" for r in rows), [r["note"] for r in rows]
    assert not any(code in r["recommendations"].split() for r in rows for code in ("progress", "start"))
    assert "Observation could not be read whole" in err
    assert re.search(r"problems in the export\s+│\s+6 │", run.stderr)
    assert "Problems in the export (6:" in (run.out / "worklist.html").read_text()


def test_byte_ranges_of_a_plain_file_keep_their_line_numbers(tmp_path: Path) -> None:
    """A file cut into many small partitions: every line read once, with the number an editor shows."""
    folder = tmp_path / "export"
    folder.mkdir()
    resources = [r for i in range(2) for r in patient(i, 3, NOW_AT, 20)[1]]
    text = [json.dumps(r) for r in resources]
    text[57] = "{oops"
    (folder / "Observation.ndjson").write_text("\n".join(text))  # no final newline, as some servers write
    export = discover(folder, block_bytes=700)
    assert len(export.parts) > 20
    seen: list[tuple[int, str]] = []
    problems = []
    for part in export.parts:
        columns = read_part(part)
        for line, resource, pid in zip(columns["line"], columns["resource"], columns["patient"]):
            if pid:
                seen.append((line, resource))
            else:
                problems.append(json.loads(resource))
    assert sorted(seen) == [(n + 1, t) for n, t in enumerate(text) if n != 57]
    assert [(p["line"], p["kind"]) for p in problems] == [(58, "malformed")]
    assert export.missing_types == ["Patient", "Condition", "ServiceRequest", "Goal", "CarePlan"]


def test_an_unreadable_file_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    missing = tmp_path / "Observation.ndjson.gz"
    columns = read_part(Part(str(missing)))
    problem = json.loads(columns["resource"][0])
    assert (problem["kind"], problem["file"]) == ("unreadable", "Observation.ndjson.gz")
    assert "No such file" in problem["message"]


def test_unusable_arguments_are_refused_with_a_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The command's own process for one refusal (its exit status and message), the others through the same entry
    point in this process (pacing-cds is cds.cli:main): an exception would fail the test as a traceback would."""
    (tmp_path / "empty").mkdir()
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "Patient.ndjson").write_text(json.dumps({"resourceType": "Patient", "id": "a"}) + "\n")
    run = worklist(tmp_path / "nowhere", tmp_path / "out")
    assert (run.code, "is not a folder of Bulk Data NDJSON files" in run.stderr, "Traceback" in run.stderr) == \
        (2, True, False), run.stderr
    for folder, args, message in (
        ("empty", (), "holds no .ndjson or .ndjson.gz files"),
        ("one", ("--now", "last tuesday"), "--now 'last tuesday' is not a date"),
    ):
        code = main(["worklist", str(tmp_path / folder), "--out", str(tmp_path / "out"), "--now", NOW, *args])
        err = capsys.readouterr().err
        assert (code, message in err, "Traceback" in err) == (2, True, False), err
    run = worklist(tmp_path / "one", tmp_path / "out", "--scheduler", f"tcp://127.0.0.1:{free_port()}")
    assert run.code == 1 and "cannot reach the Dask scheduler" in run.stderr and "Traceback" not in run.stderr
