"""A real Dask cluster, a generated export of about 200 patients, and one worklist run over them, shared."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bench.export import patient, write_export
from tests.support.dask_cluster import DaskCluster

NOW = "2026-11-20"
NOW_AT = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
PACING_CDS = Path(sys.executable).parent / "pacing-cds"


@dataclass
class Run:
    """A finished `pacing-cds worklist` process and its output folder."""

    code: int
    stdout: str
    stderr: str
    out: Path


def worklist(export: Path, out: Path, *args: str, timeout_s: float = 600, env: dict[str, str] | None = None) -> Run:
    """`pacing-cds worklist EXPORT --out OUT --now NOW ARGS...` as a user runs it, with `env` added to an
    environment cleared of PACING_CDS_* and DASK_* variables. The local cluster has one worker unless ARGS say
    otherwise (one_worker)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PACING_CDS_", "DASK_"))} | (env or {})
    done = subprocess.run([str(PACING_CDS), "worklist", str(export), "--out", str(out), "--now", NOW,
                           *one_worker(args)],
                          env=env, capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL)
    return Run(done.returncode, done.stdout, done.stderr, out)


def one_worker(args: tuple[str, ...]) -> tuple[str, ...]:
    """The arguments with --workers 1 where they name neither the workers nor a scheduler: each worker process of
    the local cluster takes seconds of CPU to start (it imports pandas, pyarrow, dask and the rules), which the tests
    that do not ask for more spend for nothing. Those about several workers name them (test_worklist: 2)."""
    if any(a == "--workers" or a == "--scheduler" or a.startswith(("--workers=", "--scheduler=")) for a in args):
        return args
    return (*args, "--workers", "1")


def good_export(folder: Path, count: int = 3) -> set[str]:
    """`count` generated patients as plain NDJSON, a file per resource type; returns their ids."""
    people = [patient(i, 5, NOW_AT, 30)[1] for i in range(count)]
    by_type: dict[str, list[str]] = {}
    for resources in people:
        for resource in resources:
            by_type.setdefault(resource["resourceType"], []).append(json.dumps(resource))
    folder.mkdir()
    for kind, lines in by_type.items():
        (folder / f"{kind}.ndjson").write_text("\n".join(lines) + "\n")
    return {p[0]["id"] for p in people}


@pytest.fixture(scope="session")
def dask_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaskCluster]:
    cluster = DaskCluster(tmp_path_factory.mktemp("dask"), workers=2)
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 200 patients, gzipped, Observations split over several files."""
    folder = tmp_path_factory.mktemp("export")
    write_export(folder, 200, seed=11, now=NOW_AT, gzip_files=True, split=12_000)
    return folder


@pytest.fixture(scope="session")
def cluster_run(dask_cluster: DaskCluster, generated: Path, tmp_path_factory: pytest.TempPathFactory) -> Run:
    """The generated export's worklist, computed on the running cluster."""
    return worklist(generated, tmp_path_factory.mktemp("worklist"), "--scheduler", dask_cluster.address)
