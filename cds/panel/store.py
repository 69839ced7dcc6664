"""The panel's store: what the exports of one FHIR server (and Group) hold, kept between runs so that a nightly
export fetches only what changed (Bulk Data `_since`) and the whole panel is still evaluated.

Every resource the worklist reads is kept once, by type and id: a resource exported again replaces the copy held
(upsert). The resources are Parquet files bucketed by patient (BUCKETS files, a patient's resources all in the
one its id hashes to), so that evaluating the panel needs no shuffle and a merge rewrites only the buckets of the
patients that changed. Beside them, store.json says whose export the store holds (server, Group), the types asked
for, and the `transactionTime` the next incremental export starts from: the server's own clock, never this
machine's.

The store never runs ahead of what it holds. A full export is written to a new folder that replaces the old one
once whole; a merge replaces one bucket file at a time and moves `transactionTime` on only after the last, so a run
killed in the middle merges the same changes again next time (an upsert twice is an upsert once). An export that
lost part of a file (cut short, unreadable) moves nothing on: the next run asks again from the same instant.

What an incremental export cannot say: a resource deleted on the server (Bulk Data lists deletions only when asked
and not every server can), or the earlier data of a patient who joined the Group since (servers may, not must,
send it). A full run (no `--since`) rebuilds the store from nothing; the nightly recipe makes one a week.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from cds.panel.source import FILE_KINDS, PROBLEM_KEY, TYPES, Export, Part, Problem, read_part, task_limit
from cds.panel.source import bucket_of as source_bucket

NAME = "store.json"
BUCKETS = 64
VERSION = 2  # 2: each bucket sorted by patient (a store of another version is rebuilt by a full export)
ROW_GROUP = 8192  # rows a Parquet row group holds: what an evaluation task reads at a time
SCHEMA = pa.schema([("patient", pa.string()), ("type", pa.string()), ("id", pa.string()), ("file", pa.string()),
                    ("line", pa.int64()), ("resource", pa.string())])
SEQ = "seq"  # a full export's running line number, while its buckets are first written
# What a Parquet bucket (zstd) holds against its raw NDJSON, for sizing only.
RAW_PER_STORED = 6


class StoreError(ValueError):
    """store.json is there but cannot be used; the message says why."""


@dataclass
class State:
    """Whose export the store holds and where the next incremental export starts."""

    server: str
    group: str | None
    types: list[str]
    transaction_time: str | None  # None: the store may lack something, the next run must be a full export
    version: int = VERSION

    def serves(self, server: str, group: str | None) -> bool:
        return self.server.rstrip("/") == server.rstrip("/") and self.group == group and self.version == VERSION


def load(folder: Path) -> State | None:
    """The store's state; None when there is no store; StoreError when store.json cannot be used."""
    path = folder / NAME
    if not path.exists():
        return None
    try:
        saved = orjson.loads(path.read_bytes())
        return State(**{k: saved[k] for k in State.__dataclass_fields__ if k in saved})
    except (OSError, orjson.JSONDecodeError, TypeError) as exc:
        raise StoreError(f"{path.name} cannot be read ({type(exc).__name__})") from exc


def _save(folder: Path, state: State) -> None:
    write_private(folder / NAME, orjson.dumps(asdict(state), option=orjson.OPT_INDENT_2))


def bucket_of(patient: str) -> int:
    """The store's bucket of a patient id."""
    return source_bucket(patient, BUCKETS)


def bucket_path(folder: Path, bucket: int) -> Path:
    return folder / f"bucket-{bucket:02d}.parquet"


def _unsorted(folder: Path, bucket: int) -> Path:
    """A bucket as a full export is first written, before the copies of a resource listed twice are dropped."""
    return folder / f"bucket-{bucket:02d}.raw"


@dataclass
class Changes:
    """What one export brought: its resources as a table of SCHEMA, and the problems met reading it."""

    table: pa.Table
    problems: list[Problem]


def _read(export: Export) -> Iterable[Changes]:
    """The export's resources a part at a time, keyed by type and id (a resource with no id is keyed by its
    content, so that the same line exported twice is kept once)."""
    limit = task_limit(len(export.parts))
    for part in export.parts:
        columns = read_part(part, limit, keys=True)
        problems: list[Problem] = []
        keep: list[int] = []
        for index, patient in enumerate(columns["patient"]):
            if patient == PROBLEM_KEY:
                problems.append(Problem(**orjson.loads(columns["resource"][index])))
            else:
                keep.append(index)
        ids = [columns["id"][i] or "#" + hashlib.sha256(columns["resource"][i].encode()).hexdigest()[:32]
               for i in keep]
        table = pa.table({"patient": [columns["patient"][i] for i in keep], "type": [columns["type"][i] for i in keep],
                          "id": ids, "file": [columns["file"][i] for i in keep],
                          "line": [columns["line"][i] for i in keep],
                          "resource": [columns["resource"][i] for i in keep]}, schema=SCHEMA)
        yield Changes(table, problems)


def _by_bucket(table: pa.Table) -> dict[int, pa.Table]:
    """The table's rows split by the bucket of their patient."""
    rows: dict[int, list[int]] = {}
    for index, patient in enumerate(table.column("patient").to_pylist()):
        rows.setdefault(bucket_of(patient), []).append(index)
    return {bucket: table.take(pa.array(indices, pa.int64())) for bucket, indices in rows.items()}


def _keys(table: pa.Table) -> pa.Array:
    return pc.binary_join_element_wise(table.column("type"), table.column("id"), "/")


def _last_of_each(table: pa.Table) -> pa.Table:
    """One row per (type, id): the last the export gave (a resource listed twice is the same resource)."""
    last: dict[str, int] = {}
    for index, key in enumerate(_keys(table).to_pylist()):
        last[key] = index
    if len(last) == table.num_rows:
        return table
    return table.take(pa.array(sorted(last.values()), pa.int64()))


def rebuild(folder: Path, export: Export, server: str, group: str | None, types: list[str],
            transaction_time: str | None) -> list[Problem]:
    """Replace the store with the resources of a full export; the problems met reading it."""
    fresh = folder.with_name(folder.name + ".new")
    shutil.rmtree(fresh, ignore_errors=True)
    fresh.mkdir(mode=0o700, parents=True)
    writers: dict[int, pq.ParquetWriter] = {}
    problems: list[Problem] = []
    seq = 0  # the place of each resource in the export, so that the last of two copies can be told
    try:
        for changes in _read(export):
            problems.extend(changes.problems)
            table = changes.table.append_column(SEQ, pa.array(range(seq, seq + changes.table.num_rows), pa.int64()))
            seq += table.num_rows
            for bucket, rows in _by_bucket(table).items():
                if bucket not in writers:
                    writers[bucket] = pq.ParquetWriter(_private_file(_unsorted(fresh, bucket)), rows.schema,
                                                       compression="zstd")
                writers[bucket].write_table(rows)
    finally:
        for writer in writers.values():
            writer.close()
    dropped = _earlier_copies([_unsorted(fresh, bucket) for bucket in writers])
    for bucket in writers:  # a resource the export lists twice is held once, as a merge would hold it
        rows = pq.read_table(_unsorted(fresh, bucket))
        if len(dropped):
            rows = rows.filter(pc.invert(pc.is_in(rows.column(SEQ), value_set=dropped)))
        _write_bucket(rows.drop_columns([SEQ]), bucket_path(fresh, bucket))
        _unsorted(fresh, bucket).unlink()
    whole = not any(p.kind in FILE_KINDS for p in problems)
    _save(fresh, State(server, group, list(types), transaction_time if whole else None))
    old = folder.with_name(folder.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        folder.rename(old)
    fresh.rename(folder)
    shutil.rmtree(old, ignore_errors=True)
    return problems


def _earlier_copies(paths: list[Path]) -> pa.Array:
    """The places (SEQ) of every copy of a resource but the last the export gave, wherever its patient put it; read
    from the keys alone, and in Arrow (a full export's keys are millions of short strings)."""
    keyed = pa.concat_tables([pa.table({"key": _keys(t), SEQ: t.column(SEQ)})
                              for t in (pq.read_table(p, columns=["type", "id", SEQ]) for p in paths)]) \
        if paths else pa.table({"key": pa.array([], pa.string()), SEQ: pa.array([], pa.int64())})
    counted = keyed.group_by("key").aggregate([(SEQ, "max"), (SEQ, "count")])
    twice = counted.filter(pc.greater(counted.column(f"{SEQ}_count"), 1))
    if not twice.num_rows:
        return pa.array([], pa.int64())
    copies = keyed.filter(pc.is_in(keyed.column("key"), value_set=twice.column("key")))
    return pc.filter(copies.column(SEQ), pc.invert(pc.is_in(copies.column(SEQ),
                                                            value_set=twice.column(f"{SEQ}_max"))))


def merge(folder: Path, export: Export, state: State,
          transaction_time: str | None) -> tuple[list[Problem], int, int]:
    """Upsert an incremental export's resources into the store; (the problems met reading it, the resources and the
    patients it changed). transactionTime moves on only when every file was read whole."""
    parts = list(_read(export))
    problems = [p for changes in parts for p in changes.problems]
    changed = _last_of_each(pa.concat_tables([c.table for c in parts])) if parts else SCHEMA.empty_table()
    keys = _keys(changed)
    arriving = _by_bucket(changed)
    for bucket in range(BUCKETS):
        # A resource's new copy goes to the bucket of its patient; its old copy may be in another (a resource moved
        # to another patient), so every bucket holding a changed key is rewritten, found by reading its keys only.
        path = bucket_path(folder, bucket)
        rows = arriving.get(bucket)
        if rows is None and not (path.exists() and pc.any(pc.is_in(
                _keys(pq.read_table(path, columns=["type", "id"])), value_set=keys)).as_py()):
            continue
        if path.exists():
            kept = pq.read_table(path, schema=SCHEMA)
            kept = kept.filter(pc.invert(pc.is_in(_keys(kept), value_set=keys)))
            rows = kept if rows is None else pa.concat_tables([kept, rows])
        assert rows is not None
        partial = path.with_name(path.name + ".part")
        _write_bucket(rows, partial)
        os.replace(partial, path)
    if transaction_time and not any(p.kind in FILE_KINDS for p in problems):
        state.transaction_time = transaction_time
        _save(folder, state)
    return problems, changed.num_rows, len(set(changed.column("patient").to_pylist()))


def _write_bucket(rows: pa.Table, path: Path) -> None:
    """A bucket sorted by patient (a patient's resources together, in the order they came), in row groups of
    ROW_GROUP rows: the evaluation reads it a row group at a time and evaluates each patient once whole, so its
    memory does not grow with the bucket."""
    ordered = rows.take(pc.sort_indices(rows, sort_keys=[("patient", "ascending")]))
    pq.write_table(ordered, _private_file(path), compression="zstd", row_group_size=ROW_GROUP)


def as_export(folder: Path, state: State, refused: list[Problem], file_types: dict[str, str],
              notes: list[str]) -> Export:
    """The store as the worklist job reads it: a part per bucket, whole patients in each. A type asked for that
    the store holds none of is none recorded; a type never asked for is not exported (unread)."""
    parts: list[Part] = []
    held: set[str] = set()
    raw = 0
    for bucket in range(BUCKETS):
        path = bucket_path(folder, bucket)
        if not path.exists():
            continue
        parts.append(Part(str(path)))
        raw += path.stat().st_size * RAW_PER_STORED
        held.update(t for t in pc.unique(pq.read_table(path, columns=["type"]).column("type")).to_pylist() if t)
    not_exported = [t for t in TYPES if t not in state.types]
    missing = [t for t in TYPES if t in state.types and t not in held]
    return Export(parts, raw, missing, refused, not_exported, not_exported, file_types, notes, grouped=True)


class NotSorted(ValueError):
    """A bucket whose patients are not in order: the store was not written by this version."""


def patients_of(path: str) -> Iterator[tuple[str, list[tuple[str, int, str]]]]:
    """Each patient of a bucket with its lines (file, line, resource), a row group at a time: only one row group
    and one patient are held."""
    current: str | None = None
    lines: list[tuple[str, int, str]] = []
    with pq.ParquetFile(path) as bucket:
        for batch in bucket.iter_batches(batch_size=ROW_GROUP, columns=["patient", "file", "line", "resource"],
                                         use_threads=False):
            for patient, file, line, text in zip(*(column.to_pylist() for column in batch.columns)):
                if patient != current:
                    if current is not None:
                        if patient < current:
                            raise NotSorted(f"{Path(path).name} is not sorted by patient")
                        yield current, lines
                    current, lines = patient, []
                lines.append((file, line, text))
    if current is not None:
        yield current, lines


def _private_file(path: Path) -> str:
    """Create `path` readable by this user only (a store holds patient data), and give its name."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    os.close(fd)
    return str(path)


def write_private(path: Path, content: bytes) -> None:
    """Write `content` to `path` whole or not at all, readable by this user only."""
    partial = path.with_name(path.name + ".part")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(content)
    os.replace(partial, path)
