"""What runs inside a Dask worker: the rule engines built once per worker process, a part of the export written
out by the bucket of each line's patient, and a bucket's evaluation (the worklist's, or the impact's: each patient
under two rule sets).

A durable-rules engine cannot be pickled, so the rule files travel instead (a few hundred kB, once per worker,
in a worker plugin) and each worker loads them itself. Shipping the files rather than a path means a cluster
whose workers do not share the client's disk evaluates with exactly the client's rule set.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
from distributed import WorkerPlugin

from cds.collector import settle_heap
from cds.engine import RuleEngine, load_knowledge
from cds.panel.rows import evaluate_group, evaluate_parsed, impact_row, parse_group
from cds.panel.source import PROBLEM_KEY, PROBLEMS_LISTED, Part, Problem, ProblemLog, bucket_of, read_part
from cds.panel.store import patients_of

# The columns a line travels in from its read task to its patient's evaluation task.
SPILL_SCHEMA = pa.schema([("patient", pa.string()), ("file", pa.string()), ("line", pa.int64()),
                          ("resource", pa.string())])
_ENGINES: dict[str, RuleEngine] = {}  # per worker process, by rule bundle digest; filled by RulesPlugin.setup


def rule_bundle(rules_dir: Path) -> dict[str, bytes]:
    """Every file of the rules folder, by relative path."""
    return {str(p.relative_to(rules_dir)): p.read_bytes() for p in sorted(rules_dir.rglob("*")) if p.is_file()}


def bundle_digest(bundle: dict[str, bytes], silent_as_live: bool = False) -> str:
    """The key of the engine built from these files: an engine whose silent rules answer as if live is another."""
    sha = hashlib.sha256(b"silent-as-live\0" if silent_as_live else b"")
    for name, content in sorted(bundle.items()):
        sha.update(name.encode() + b"\0" + content + b"\0")
    return sha.hexdigest()


def engine_from_bundle(bundle: dict[str, bytes], silent_as_live: bool = False) -> RuleEngine:
    """Write the files to a temporary folder, load and compile them there."""
    folder = Path(tempfile.mkdtemp(prefix="pacing-cds-rules-"))
    try:
        for name, content in bundle.items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(content)
        return RuleEngine(load_knowledge(folder), silent_as_live=silent_as_live)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


class RulesPlugin(WorkerPlugin):
    """Builds the rule engine on every worker, including workers that join later. `silent_as_live`: its rules in
    silent mode answer as if live (the impact of a change once live)."""

    def __init__(self, bundle: dict[str, bytes], silent_as_live: bool = False) -> None:
        self.bundle, self.silent_as_live = bundle, silent_as_live
        self.digest = bundle_digest(bundle, silent_as_live)
        self.name = f"pacing-cds-rules-{self.digest[:16]}"

    def setup(self, worker: Any) -> None:
        if self.digest not in _ENGINES:
            _ENGINES[self.digest] = engine_from_bundle(self.bundle, self.silent_as_live)
            settle_heap()


def worker_engine(digest: str) -> RuleEngine:
    engine = _ENGINES.get(digest)
    if engine is None:
        raise LookupError(f"no rule engine {digest[:16]} on this worker: the rules plugin was not registered")
    return engine


def spill_part(part: Part, index: int, folder: str, buckets: int, limit: int) -> tuple[list[dict[str, Any]],
                                                                                dict[int, str]]:
    """The read task: a part's lines written to one Arrow file per bucket of their patients (in `folder`, readable
    by this user only), and the part's problems (as dicts; `limit` line problems listed, the rest counted). Files
    on disk, not results held in memory, carry the lines to the evaluation: no worker ever holds more than a part
    and a bucket."""
    columns = read_part(part, limit)
    problems: list[dict[str, Any]] = []
    rows: dict[int, list[int]] = {}
    for number, patient in enumerate(columns["patient"]):
        if patient == PROBLEM_KEY:
            problems.append(orjson.loads(columns["resource"][number]))
        else:
            rows.setdefault(bucket_of(patient, buckets), []).append(number)
    table = pa.table({name: pa.array(columns[name], SPILL_SCHEMA.field(name).type) for name in SPILL_SCHEMA.names})
    written: dict[int, str] = {}
    for bucket, numbers in rows.items():
        path = Path(folder) / f"{bucket:05d}-{index:06d}.arrow"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as sink, pa.ipc.new_file(sink, SPILL_SCHEMA) as writer:
            writer.write_table(table.take(pa.array(numbers, pa.int64())))
        written[bucket] = str(path)
    return problems, written


def _patients(paths: list[str]) -> Iterator[tuple[str, list[tuple[str, int, str]]]]:
    """Each patient of a bucket with its lines: a bucket of the store (one Parquet file, sorted by patient) a row
    group at a time; a bucket of spilled Arrow files (one per read task, in no order) gathered whole, then handed
    out a patient at a time."""
    if len(paths) == 1 and paths[0].endswith(".parquet"):
        yield from patients_of(paths[0])
        return
    groups: dict[str, list[tuple[str, int, str]]] = {}
    for path in paths:
        with pa.memory_map(path) as source:
            table = pa.ipc.open_file(source).read_all()
        for patient, file, line, text in zip(*(table.column(name).to_pylist() for name in SPILL_SCHEMA.names)):
            groups.setdefault(patient, []).append((file, line, text))
        del table
    for patient in list(groups):
        yield patient, groups.pop(patient)


def evaluate_bucket(paths: list[str], now_iso: str, digest: str, unread: str = "",
                    limit: int = PROBLEMS_LISTED) -> dict[str, list[str]]:
    """The evaluation task: every line of a bucket's patients (from `paths`) -> rows and problems as columns
    kind/patient/data (`unread`: the resource types whose files could not be read whole, by comma; `limit`: the
    problems it lists, the rest counted). The lines are grouped in a dict over plain lists: a pandas groupby builds
    a sub-frame per patient, which cost about 15 % of the evaluation itself."""
    engine, now = worker_engine(digest), datetime.fromisoformat(now_iso)
    missing = tuple(t for t in unread.split(",") if t)
    return _bucket_rows(paths, limit, lambda patient, lines: evaluate_group(engine, patient, lines, now, missing))


def impact_bucket(paths: list[str], now_iso: str, before: str, after: str, unread: str = "",
                  limit: int = PROBLEMS_LISTED) -> dict[str, list[str]]:
    """The impact's evaluation task: every patient of a bucket, its lines parsed once, evaluated under the engines
    `before` and `after` (by digest) -> impact rows and problems, as evaluate_bucket gives worklist rows."""
    was, will, now = worker_engine(before), worker_engine(after), datetime.fromisoformat(now_iso)
    missing = tuple(t for t in unread.split(",") if t)

    def row_of(patient: str, lines: list[tuple[str, int, str]]) -> tuple[dict[str, Any] | None, list[Problem]]:
        parsed, problems = parse_group(patient, lines)
        if parsed is None:
            return None, problems
        return impact_row(patient, evaluate_parsed(was, parsed, now, missing),
                          evaluate_parsed(will, parsed, now, missing)), problems

    return _bucket_rows(paths, limit, row_of)


RowOf = Callable[[str, list[tuple[str, int, str]]], tuple[dict[str, Any] | None, list[Problem]]]


def _bucket_rows(paths: list[str], limit: int, row_of: RowOf) -> dict[str, list[str]]:
    """Each patient of a bucket through `row_of` -> its rows and problems as columns kind/patient/data."""
    out: dict[str, list[str]] = {"kind": [], "patient": [], "data": []}
    found = ProblemLog(limit)
    for patient, lines in _patients(paths):
        row, problems = row_of(patient, lines)
        if row is not None:
            out["kind"].append("row")
            out["patient"].append(patient)
            out["data"].append(orjson.dumps(row).decode())
        for problem in problems:
            found.append(problem)
    return _with_problems(out, found)


def _with_problems(out: dict[str, list[str]], found: ProblemLog) -> dict[str, list[str]]:
    """A task's output with its problems after its rows (those past its limit as one NOT_LISTED entry)."""
    for problem in found.entries(""):
        out["kind"].append("problem")
        out["patient"].append("")
        out["data"].append(orjson.dumps(problem.as_dict()).decode())
    return out
