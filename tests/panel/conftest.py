"""A real Dask cluster, a generated export of about 200 patients, and one worklist run over them, shared."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bench.export import write_export
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


def worklist(export: Path, out: Path, *args: str, timeout_s: float = 600) -> Run:
    """`pacing-cds worklist EXPORT --out OUT --now NOW ARGS...` as a user runs it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PACING_CDS_", "DASK_"))}
    done = subprocess.run([str(PACING_CDS), "worklist", str(export), "--out", str(out), "--now", NOW, *args],
                          env=env, capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL)
    return Run(done.returncode, done.stdout, done.stderr, out)


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
