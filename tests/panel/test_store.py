"""The panel's store: after any sequence of exports (a full one, then incremental ones) it holds exactly the last
copy of each resource, in the bucket of its patient; merging an export twice is merging it once; a lost file keeps
transactionTime where it was, so the next run asks again."""

from __future__ import annotations

import gzip
import tempfile
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cds.panel import store
from cds.panel.source import TYPES, discover

PATIENTS = [f"p{i}" for i in range(6)]

resource = st.tuples(st.sampled_from(PATIENTS), st.sampled_from(("Observation", "Condition", "Goal")),
                     st.integers(0, 4), st.integers(0, 99))
exports = st.lists(st.lists(resource, max_size=12), min_size=1, max_size=4)


def write(folder: Path, resources: list[tuple[str, str, int, int]], patients: bool = True) -> None:
    """An export folder: the Patients of PATIENTS (a full export) and the resources given, by type. A resource's
    id does not name its patient: the same resource may be exported again with another subject."""
    folder.mkdir(parents=True, exist_ok=True)
    lines: dict[str, list[bytes]] = {}
    if patients:
        lines["Patient"] = [orjson.dumps({"resourceType": "Patient", "id": p}) for p in PATIENTS]
    for pid, kind, number, version in resources:
        lines.setdefault(kind, []).append(orjson.dumps({
            "resourceType": kind, "id": f"{kind[0]}{number}", "subject": {"reference": f"Patient/{pid}"},
            "note": [{"text": str(version)}]}))
    for kind, content in lines.items():
        (folder / f"{kind}.ndjson").write_bytes(b"\n".join(content) + b"\n")


def held(folder: Path) -> dict[tuple[str, str], tuple[str, int]]:
    """(type, id) -> (patient, version) of every resource the store holds, checking each is in its patient's
    bucket and held once."""
    found: dict[tuple[str, str], tuple[str, int]] = {}
    for bucket in range(store.BUCKETS):
        path = store.bucket_path(folder, bucket)
        if not path.exists():
            continue
        # Read a patient at a time (as the evaluation reads it), each patient comes once, with all its lines.
        patients = [(patient, len(lines)) for patient, lines in store.patients_of(str(path))]
        assert len({p for p, _ in patients}) == len(patients), "a patient's resources are together"
        table = store.pq.read_table(path).to_pylist()
        for row in table:
            assert store.bucket_of(row["patient"]) == bucket
            assert (row["type"], row["id"]) not in found, "a resource is held once"
            text = orjson.loads(row["resource"])
            found[(row["type"], row["id"])] = (row["patient"], int(text["note"][0]["text"]) if "note" in text else -1)
        assert sum(n for _, n in patients) == len(table)
    return found


def expected(sequence: list[list[tuple[str, str, int, int]]]) -> dict[tuple[str, str], tuple[str, int]]:
    last: dict[tuple[str, str], tuple[str, int]] = {("Patient", p): (p, -1) for p in PATIENTS}
    for resources in sequence:
        for pid, kind, number, version in resources:
            last[(kind, f"{kind[0]}{number}")] = (pid, version)
    return last


@settings(max_examples=40, deadline=None)
@given(exports)
def test_the_store_holds_the_last_copy_of_each_resource_whatever_the_sequence(
        sequence: list[list[tuple[str, str, int, int]]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write(root / "e0", sequence[0])
        store.rebuild(root / "store", discover(root / "e0"), "http://fhir", "g", list(TYPES), "t0")
        for number, resources in enumerate(sequence[1:], start=1):
            write(root / f"e{number}", resources, patients=False)
            state = store.load(root / "store")
            assert state is not None
            store.merge(root / "store", discover(root / f"e{number}"), state, f"t{number}")
        assert held(root / "store") == expected(sequence)
        final = store.load(root / "store")
        assert final is not None and final.transaction_time == f"t{len(sequence) - 1}"


@settings(max_examples=25, deadline=None)
@given(st.lists(resource, max_size=12), st.lists(resource, min_size=1, max_size=12))
def test_merging_an_export_twice_is_merging_it_once(first: list[tuple[str, str, int, int]],
                                                    changes: list[tuple[str, str, int, int]]) -> None:
    """A run killed after its merge began merges the same export again: nothing is counted twice."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write(root / "full", first)
        write(root / "changes", changes, patients=False)
        store.rebuild(root / "store", discover(root / "full"), "http://fhir", None, list(TYPES), "t0")
        for _ in range(2):
            state = store.load(root / "store")
            assert state is not None
            store.merge(root / "store", discover(root / "changes"), state, "t1")
        assert held(root / "store") == expected([first, changes])


def test_a_file_cut_short_keeps_transaction_time_so_the_next_run_asks_again(tmp_path: Path) -> None:
    write(tmp_path / "full", [("p1", "Observation", 1, 1)])
    store.rebuild(tmp_path / "store", discover(tmp_path / "full"), "http://fhir", None, list(TYPES), "t0")
    changes = tmp_path / "changes"
    changes.mkdir()
    whole = gzip.compress(b"\n".join(orjson.dumps({"resourceType": "Observation", "id": f"o{i}",
                                                   "subject": {"reference": "Patient/p2"}}) for i in range(500)))
    (changes / "Observation.ndjson.gz").write_bytes(whole[: len(whole) // 2])
    state = store.load(tmp_path / "store")
    assert state is not None
    problems, _, _ = store.merge(tmp_path / "store", discover(changes), state, "t1")
    assert any(p.kind == "cut-short" for p in problems)
    after = store.load(tmp_path / "store")
    assert after is not None and after.transaction_time == "t0"


def test_a_full_export_that_lost_a_file_leaves_no_instant_to_start_from(tmp_path: Path) -> None:
    full = tmp_path / "full"
    write(full, [])
    (full / "Condition.ndjson.gz").write_bytes(b"\x1f\x8b\x08\x00 not gzip")
    store.rebuild(tmp_path / "store", discover(full), "http://fhir", None, list(TYPES), "t0")
    state = store.load(tmp_path / "store")
    assert state is not None and state.transaction_time is None, "the next --since auto is a full export"


def test_the_store_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    write(tmp_path / "full", [("p1", "Observation", 1, 1)])
    store.rebuild(tmp_path / "store", discover(tmp_path / "full"), "http://fhir", None, list(TYPES), "t0")
    assert (tmp_path / "store").stat().st_mode & 0o077 == 0
    for path in (tmp_path / "store").iterdir():
        assert path.stat().st_mode & 0o077 == 0, path.name


def test_a_store_of_another_server_or_group_is_not_continued(tmp_path: Path) -> None:
    write(tmp_path / "full", [])
    store.rebuild(tmp_path / "store", discover(tmp_path / "full"), "https://a.example/fhir", "g1", list(TYPES), "t0")
    state = store.load(tmp_path / "store")
    assert state is not None and state.serves("https://a.example/fhir/", "g1")
    assert not state.serves("https://b.example/fhir", "g1") and not state.serves("https://a.example/fhir", "g2")


def test_a_patient_cut_by_row_groups_is_read_whole_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The evaluation reads a bucket a row group at a time: a patient whose lines straddle row groups is still
    handed out once, with every line."""
    monkeypatch.setattr(store, "ROW_GROUP", 5)
    resources = [(pid, "Observation", 100 * PATIENTS.index(pid) + n, 0) for pid in PATIENTS
                 for n in range(4 + PATIENTS.index(pid))]
    write(tmp_path / "full", resources)
    store.rebuild(tmp_path / "store", discover(tmp_path / "full"), "http://fhir", None, list(TYPES), "t0")
    seen: dict[str, int] = {}
    for bucket in range(store.BUCKETS):
        path = store.bucket_path(tmp_path / "store", bucket)
        if path.exists():
            assert store.pq.ParquetFile(path).metadata.num_row_groups > 1 or \
                store.pq.ParquetFile(path).metadata.num_rows <= 5
            for patient, lines in store.patients_of(str(path)):
                assert patient not in seen
                seen[patient] = len(lines)
    assert seen == {pid: 1 + 4 + PATIENTS.index(pid) for pid in PATIENTS}, "the Patient and every Observation"
