"""What runs inside a Dask worker: the rule engine built once per worker process, and a partition's evaluation.

A durable-rules engine cannot be pickled, so the rule files travel instead (a few hundred kB, once per worker,
in a worker plugin) and each worker loads them itself. Shipping the files rather than a path means a cluster
whose workers do not share the client's disk evaluates with exactly the client's rule set.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
from distributed import WorkerPlugin

from cds.engine import RuleEngine, load_knowledge
from cds.heap import settle_heap
from cds.panel.rows import evaluate_group
from cds.panel.source import PROBLEM_KEY, PROBLEMS_LISTED, ProblemLog

OUTPUT_META = {"kind": "str", "patient": "str", "data": "str"}
_ENGINES: dict[str, RuleEngine] = {}  # per worker process, by rule bundle digest; filled by RulesPlugin.setup


def rule_bundle(rules_dir: Path) -> dict[str, bytes]:
    """Every file of the rules folder, by relative path."""
    return {str(p.relative_to(rules_dir)): p.read_bytes() for p in sorted(rules_dir.rglob("*")) if p.is_file()}


def bundle_digest(bundle: dict[str, bytes]) -> str:
    sha = hashlib.sha256()
    for name, content in sorted(bundle.items()):
        sha.update(name.encode() + b"\0" + content + b"\0")
    return sha.hexdigest()


def engine_from_bundle(bundle: dict[str, bytes]) -> RuleEngine:
    """Write the files to a temporary folder, load and compile them there."""
    folder = Path(tempfile.mkdtemp(prefix="pacing-cds-rules-"))
    try:
        for name, content in bundle.items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(content)
        return RuleEngine(load_knowledge(folder))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


class RulesPlugin(WorkerPlugin):
    """Builds the rule engine on every worker, including workers that join later."""

    def __init__(self, bundle: dict[str, bytes]) -> None:
        self.bundle = bundle
        self.digest = bundle_digest(bundle)
        self.name = f"pacing-cds-rules-{self.digest[:16]}"

    def setup(self, worker: Any) -> None:
        if self.digest not in _ENGINES:
            _ENGINES[self.digest] = engine_from_bundle(self.bundle)
            settle_heap()


def worker_engine(digest: str) -> RuleEngine:
    engine = _ENGINES.get(digest)
    if engine is None:
        raise LookupError(f"no rule engine {digest[:16]} on this worker: the rules plugin was not registered")
    return engine


def evaluate_frame(engine: RuleEngine, frame: pd.DataFrame, now: datetime, unread: tuple[str, ...] = (),
                   limit: int = PROBLEMS_LISTED) -> dict[str, list[str]]:
    """A shuffled partition (all lines of its patients) -> rows and problems as columns kind/patient/data. The read
    tasks' problems pass through (each task bounded its own); of the problems found here, `limit` are kept and the
    rest counted.

    The lines are grouped in a dict over plain lists, as the one-process loop does: a pandas groupby builds a
    sub-frame per patient, which cost about 15 % of the evaluation itself."""
    groups: dict[str, list[tuple[str, int, str]]] = {}
    for patient, file, line, text in zip(frame["patient"].tolist(), frame["file"].tolist(),
                                         frame["line"].tolist(), frame["resource"].tolist()):
        groups.setdefault(patient, []).append((file, line, text))
    out: dict[str, list[str]] = {"kind": [], "patient": [], "data": []}
    found = ProblemLog(limit)
    for patient, items in groups.items():
        if patient == PROBLEM_KEY:
            for _, _, text in items:
                out["kind"].append("problem")
                out["patient"].append("")
                out["data"].append(text)
            continue
        row, problems = evaluate_group(engine, patient, items, now, unread)
        if row is not None:
            out["kind"].append("row")
            out["patient"].append(patient)
            out["data"].append(orjson.dumps(row).decode())
        for problem in problems:
            found.append(problem)
    for problem in found.entries(""):
        out["kind"].append("problem")
        out["patient"].append("")
        out["data"].append(orjson.dumps(problem.as_dict()).decode())
    return out


def evaluate_partition(frame: pd.DataFrame, now_iso: str, digest: str, unread: str = "",
                       limit: int = PROBLEMS_LISTED) -> pd.DataFrame:
    """The Dask task over one output partition of the shuffle (`unread`: the resource types whose files could not
    be read whole, by comma; `limit`: the problems it lists)."""
    missing = tuple(t for t in unread.split(",") if t)
    columns = evaluate_frame(worker_engine(digest), frame, datetime.fromisoformat(now_iso), missing, limit) \
        if len(frame) else {}
    return pd.DataFrame({name: pd.Series(columns.get(name, []), dtype=dtype) for name, dtype in OUTPUT_META.items()})
