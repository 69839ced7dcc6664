"""A hostile export: a line too long to hold, a gzip bomb, floods of bad lines, terminal escapes, symbolic links.
Each is refused and reported where it is, the rest of the export is evaluated, and every output is written
readable by its owner only."""

from __future__ import annotations

import csv
import gzip
import json
import os
import re
import stat
from pathlib import Path

from bench.export import patient
from cds.panel.source import MAX_LINE_BYTES, PROBLEMS_LISTED, discover, read_part
from tests.panel.conftest import NOW_AT, Run, good_export, worklist
from tests.support.dask_cluster import DaskCluster

MIB = 1024 * 1024
OUTPUTS = ("worklist.parquet", "worklist.csv", "worklist.html", "problems.csv")


def problems_of(run: Run) -> list[dict[str, str]]:
    with open(run.out / "problems.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def rows_of(run: Run) -> list[dict[str, str]]:
    with open(run.out / "worklist.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def problem_total(run: Run) -> int:
    """The count of problems in the summary table printed at the end."""
    found = re.search(r"problems in the export\s+│\s+(\d+) │", run.stderr)
    assert found, run.stderr[-3000:]
    return int(found[1])


def finished(run: Run) -> None:
    """Exit 0, no traceback, and every output written."""
    assert run.code == 0, run.stderr[-3000:]
    assert "Traceback" not in run.stderr
    assert all((run.out / name).is_file() for name in OUTPUTS)


def test_a_line_over_the_limit_is_reported_and_the_lines_after_it_are_read(tmp_path: Path,
                                                                            dask_cluster: DaskCluster) -> None:
    """The same rows as without the long line: only that line is lost."""
    good_export(tmp_path / "clean")
    clean = worklist(tmp_path / "clean", tmp_path / "clean-out", "--scheduler", dask_cluster.address)
    finished(clean)
    good = good_export(tmp_path / "export")
    observations = tmp_path / "export" / "Observation.ndjson"
    lines = observations.read_text().splitlines()
    with open(observations, "w") as handle:  # written a MiB at a time: the test holds no long line either
        handle.write(lines[0] + "\n")
        handle.write(f'{{"resourceType": "Observation", "id": "huge", "status": "final", '
                     f'"subject": {{"reference": "Patient/{sorted(good)[0]}"}}, "note": [{{"text": "')
        for _ in range(MAX_LINE_BYTES // MIB + 2):
            handle.write("x" * MIB)
        handle.write('"}]}\n')
        handle.write("\n".join(lines[1:]) + "\n")
    run = worklist(tmp_path / "export", tmp_path / "out", "--scheduler", dask_cluster.address)
    finished(run)
    assert [(p["kind"], p["file"], p["line"]) for p in problems_of(run)] == [("too-long", "Observation.ndjson", "2")]
    assert "Observation.ndjson:2: too-long" in run.stderr
    assert rows_of(run) == rows_of(clean)
    assert {r["patient"] for r in rows_of(run)} == {f"Patient/{pid}" for pid in good}


def test_a_gzip_bomb_is_refused_and_its_type_is_unread_for_every_patient(tmp_path: Path,
                                                                         dask_cluster: DaskCluster) -> None:
    """A GiB of zeros (one line with no end) in a gzip file of about a MB."""
    good = good_export(tmp_path / "export")
    bomb = tmp_path / "export" / "Observation.002.ndjson.gz"
    zeros = bytes(MIB)
    with gzip.open(bomb, "wb") as handle:
        for _ in range(1024):
            handle.write(zeros)
    run = worklist(tmp_path / "export", tmp_path / "out", "--scheduler", dask_cluster.address)
    finished(run)
    problems = {(p["kind"], p["file"], p["line"]) for p in problems_of(run)}
    assert ("too-long", bomb.name, "1") in problems
    assert any(kind == "too-large" and file == bomb.name for kind, file, _ in problems), problems
    assert f"{bomb.name}:1: too-long" in run.stderr
    err = run.stderr.replace("\n", " ")
    assert "Observation could not be read whole" in err
    rows = rows_of(run)
    assert {r["patient"] for r in rows} == {f"Patient/{pid}" for pid in good}
    assert all(r["note"] == "could not be read: Observation" for r in rows), [r["note"] for r in rows]


def test_floods_of_bad_lines_are_refused_or_listed_up_to_a_cap_with_a_count_of_the_rest(
        tmp_path: Path, dask_cluster: DaskCluster) -> None:
    """Eight million bad lines in a few kB of gzip, and tens of thousands in a plain file."""
    good_export(tmp_path / "export")
    flood = tmp_path / "export" / "Observation.002.ndjson.gz"
    bad = b"x\n" * MIB
    with gzip.open(flood, "wb") as handle:
        for _ in range(8):
            handle.write(bad)
    plain_bad = PROBLEMS_LISTED * 5 // 2
    (tmp_path / "export" / "Condition.002.ndjson").write_text("{oops\n" * plain_bad)
    run = worklist(tmp_path / "export", tmp_path / "out", "--scheduler", dask_cluster.address)
    finished(run)
    *listed, last = problems_of(run)
    assert len(listed) <= PROBLEMS_LISTED
    assert last["kind"] == "not-listed", last
    not_listed = int(last["message"].split()[0])
    assert last["message"] == f"{not_listed} more problems not listed"
    assert any(p["kind"] == "too-large" and p["file"] == flood.name for p in listed)
    assert {p["kind"] for p in listed} <= {"malformed", "too-large"}
    total = problem_total(run)
    assert total == len(listed) + not_listed
    assert total > plain_bad, "every bad line of the plain file is counted, listed or not"
    assert f"{not_listed} more problems not listed" in run.stderr.replace("\n", " ")
    assert "Observation could not be read whole" in run.stderr.replace("\n", " ")


def test_terminal_escapes_from_the_export_are_shown_escaped(tmp_path: Path, dask_cluster: DaskCluster) -> None:
    good_export(tmp_path / "export")
    stranger = {"resourceType": "Observation", "id": "esc", "status": "final",
                "subject": {"reference": "Patient/\x1b[31mX\x1b]0;owned\x07"}}
    name = "Observation.\x1b[2J.ndjson"
    (tmp_path / "export" / name).write_text(json.dumps(stranger) + "\n{oops\x1b[1A\n")
    run = worklist(tmp_path / "export", tmp_path / "out", "--scheduler", dask_cluster.address)
    finished(run)
    shown = run.stdout + run.stderr
    assert "\x1b" not in shown and "\x07" not in shown
    assert "refers to Patient/\\x1b[31mX\\x1b]0;owned\\x07" in shown.replace("\n", "")
    assert "Observation.\\x1b[2J.ndjson:2: malformed" in shown


def test_every_output_is_readable_by_its_owner_only(tmp_path: Path, dask_cluster: DaskCluster) -> None:
    """Under a permissive umask, and over an earlier run's file that others could read."""
    good_export(tmp_path / "export")
    again = tmp_path / "again"
    again.mkdir()
    (again / "worklist.csv").write_text("an earlier run\n")
    os.chmod(again / "worklist.csv", 0o644)
    umask = os.umask(0o022)
    try:
        runs = [worklist(tmp_path / "export", tmp_path / "new" / "out", "--scheduler", dask_cluster.address),
                worklist(tmp_path / "export", again, "--scheduler", dask_cluster.address)]
    finally:
        os.umask(umask)
    for run in runs:
        finished(run)
        modes = {p.name: stat.S_IMODE(p.lstat().st_mode) for p in run.out.iterdir()}
        assert modes == dict.fromkeys(OUTPUTS, 0o600), {k: oct(v) for k, v in modes.items()}
    assert stat.S_IMODE((tmp_path / "new" / "out").stat().st_mode) == 0o700


def test_symbolic_links_are_not_followed_and_each_is_reported(tmp_path: Path, dask_cluster: DaskCluster) -> None:
    """Links to a file outside, to a file inside and to a folder outside: none is read, their types are unread
    (not none recorded), and the patient whose data is outside is not in the worklist."""
    export, outside = tmp_path / "export", tmp_path / "outside"
    good = good_export(export)
    outside.mkdir()
    (export / "Observation.ndjson").rename(outside / "Observation.ndjson")
    (export / "Observation.ndjson").symlink_to(outside / "Observation.ndjson")
    secret = patient(7, 5, NOW_AT, 30)[1]
    (outside / "Patient.ndjson").write_text(json.dumps(secret[0]) + "\n")
    (export / "Patient.002.ndjson").symlink_to(outside / "Patient.ndjson")
    (export / "Condition.002.ndjson").symlink_to("Condition.ndjson")
    (export / "more").symlink_to(outside)
    run = worklist(export, tmp_path / "out", "--scheduler", dask_cluster.address)
    finished(run)
    rows = rows_of(run)
    assert {r["patient"] for r in rows} == {f"Patient/{pid}" for pid in good}
    assert all("Observation" in r["note"] for r in rows), [r["note"] for r in rows]
    refused = {p["file"] for p in problems_of(run) if p["kind"] == "not-regular"}
    assert refused == {"Observation.ndjson", "Patient.002.ndjson", "Condition.002.ndjson", "more"}
    err = run.stderr.replace("\n", " ")
    assert "no Observation file in the export" not in err
    assert "Observation could not be read whole" in err


def test_a_long_line_across_byte_ranges_is_reported_once_and_no_line_is_lost(tmp_path: Path) -> None:
    """A plain file cut into ranges smaller than its long line: the range where the line starts reports it, the
    ranges inside it own no line, and every other line is read once with its number."""
    folder = tmp_path / "export"
    folder.mkdir()
    resources = [json.dumps(r) for r in patient(0, 5, NOW_AT, 10)[1][:6]]
    with open(folder / "Observation.ndjson", "w") as handle:
        handle.write(resources[0] + "\n" + resources[1] + "\n")
        for _ in range(MAX_LINE_BYTES // MIB + 1):
            handle.write("y" * MIB)
        handle.write("\n" + "\n".join(resources[2:]) + "\n")
    export = discover(folder, block_bytes=MIB)
    assert len(export.parts) > MAX_LINE_BYTES // MIB
    seen: list[tuple[int, str]] = []
    problems: list[tuple[int, str]] = []
    for part in export.parts:
        columns = read_part(part)
        for line, resource, pid in zip(columns["line"], columns["resource"], columns["patient"]):
            if pid:
                seen.append((line, resource))
            else:
                problems.append((line, json.loads(resource)["kind"]))
    assert sorted(seen) == [(1, resources[0]), (2, resources[1])] + [(n + 2, r) for n, r in enumerate(resources[2:],
                                                                                                      start=2)]
    assert problems == [(3, "too-long")]


def test_orders_with_hostile_timings_are_set_aside_and_the_run_finishes(tmp_path: Path,
                                                                         dask_cluster: DaskCluster) -> None:
    """A frequency of 2**63 or a period of 1e-300 in an export's orders: each patient's row holds on a dose that
    cannot be read, and the run ends (the dose arithmetic once stepped down one session at a time)."""
    good = good_export(tmp_path / "export")
    orders = tmp_path / "export" / "ServiceRequest.ndjson"
    changes = [{"frequency": 2**63}, {"period": 1e-300}, {"duration": 1e20}]
    hostile = []
    for index, line in enumerate(orders.read_text().splitlines()):
        order = json.loads(line)
        order["occurrenceTiming"]["repeat"].update(changes[index % len(changes)])
        hostile.append(json.dumps(order))
    assert hostile, "the generated export has exercise orders"
    orders.write_text("\n".join(hostile) + "\n")
    run = worklist(tmp_path / "export", tmp_path / "out", "--scheduler", dask_cluster.address, timeout_s=300)
    finished(run)
    rows = {r["patient"]: r["recommendations"].split() for r in rows_of(run)}
    assert set(rows) == {f"Patient/{p}" for p in good}
    assert all("data-quality" in codes and "progress" not in codes for codes in rows.values()), rows
