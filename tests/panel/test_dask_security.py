"""The worklist's Dask connections: its local cluster admits only its own client (mutual TLS with credentials made
for the run) and serves no HTTP; a remote scheduler is reached over TLS with the operator's credentials."""

from __future__ import annotations

import gc
import operator
import os
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import httpx
import psutil
import pytest
from distributed import Client
from distributed.security import Security

from cds.panel.job import dask_client
from tests.panel.conftest import good_export, worklist
from tests.support.dask_cluster import DaskCluster, TlsFiles, write_credentials

pytestmark = pytest.mark.slow  # starts Dask clusters


def listening() -> set[tuple[str, int]]:
    """(host, port) of every TCP socket this process and its descendants listen on."""
    found: set[tuple[str, int]] = set()
    me = psutil.Process()
    for process in [me, *me.children(recursive=True)]:
        with suppress(psutil.NoSuchProcess):
            found |= {(c.laddr.ip, c.laddr.port) for c in process.net_connections(kind="tcp")
                      if c.status == psutil.CONN_LISTEN}
    return found


def answers_http(host: str, port: int) -> bool:
    try:
        httpx.get(f"http://{host}:{port}/health", timeout=5.0)
    except httpx.HTTPError:
        return False
    return True


def runs_code(address: str, security: Security | None = None) -> bool:
    """Whether a client with these credentials (none by default) gets a function run in the scheduler."""
    try:
        with Client(address, timeout="5s", security=security) as client:
            return client.run_on_scheduler(os.getpid) > 0
    except (OSError, TypeError):  # refused, reset, timed out; TypeError: tls:// with no TLS context at all
        return False
    finally:
        # A Client that failed to connect is closed by its __del__. Collected here, not during the next Client's
        # start: there its close waits for the event loop's lock that the start holds, and the test hangs.
        gc.collect()


def test_the_local_cluster_admits_no_other_client_and_serves_no_http() -> None:
    before = listening()
    with dask_client(None, 1) as client:
        assert client.submit(operator.add, 40, 2).result() == 42, "the worklist's own client computes"
        address = client.scheduler.address
        opened = listening() - before
        assert address.startswith("tls://127.0.0.1:"), address
        assert not runs_code(address.replace("tls://", "tcp://"))
        assert not runs_code(address)
        assert not runs_code(address, Security.temporary()), "credentials the cluster did not make"
        assert opened and {host for host, _ in opened} == {"127.0.0.1"}, opened
        assert 8787 not in {port for _, port in opened}
        assert [port for host, port in opened if answers_http(host, port)] == []


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DaskCluster, TlsFiles]]:
    folder = tmp_path_factory.mktemp("tls-dask")
    credentials = write_credentials(folder / "credentials")
    cluster = DaskCluster(folder, workers=1, tls=credentials)
    yield cluster, credentials
    cluster.stop()


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, set[str]]:
    folder = tmp_path_factory.mktemp("tls-export") / "export"
    return folder, good_export(folder)


def patients_of(out: Path) -> set[str]:
    return {line.split(",")[0] for line in (out / "worklist.csv").read_text().splitlines()[1:]}


def test_the_worklist_runs_on_a_tls_scheduler_with_the_tls_options(tls_cluster: tuple[DaskCluster, TlsFiles],
                                                                   export: tuple[Path, set[str]],
                                                                   tmp_path: Path) -> None:
    cluster, credentials = tls_cluster
    run = worklist(export[0], tmp_path / "out", "--scheduler", cluster.address, *credentials.options())
    assert run.code == 0, run.stderr[-3000:]
    assert patients_of(run.out) == {f"Patient/{pid}" for pid in export[1]}


def test_the_worklist_takes_the_tls_credentials_from_dask_configuration(tls_cluster: tuple[DaskCluster, TlsFiles],
                                                                        export: tuple[Path, set[str]],
                                                                        tmp_path: Path) -> None:
    cluster, credentials = tls_cluster
    env = {"DASK_DISTRIBUTED__COMM__TLS__CA_FILE": str(credentials.ca),
           "DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT": str(credentials.cert),
           "DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY": str(credentials.key)}
    run = worklist(export[0], tmp_path / "out", "--scheduler", cluster.address, env=env)
    assert run.code == 0, run.stderr[-3000:]
    assert patients_of(run.out) == {f"Patient/{pid}" for pid in export[1]}


def test_a_tls_scheduler_refuses_a_worklist_without_its_credentials(tls_cluster: tuple[DaskCluster, TlsFiles],
                                                                    export: tuple[Path, set[str]],
                                                                    tmp_path: Path) -> None:
    cluster, credentials = tls_cluster
    others = write_credentials(tmp_path / "others")
    mixed = ["--tls-ca-file", str(credentials.ca), "--tls-cert", str(others.cert), "--tls-key", str(others.key)]
    plain = cluster.address.replace("tls://", "tcp://")
    for args, code, message in (
        (["--scheduler", cluster.address], 2, "needs TLS credentials"),
        (["--scheduler", cluster.address, *others.options()], 1, "cannot reach the Dask scheduler"),
        (["--scheduler", cluster.address, *mixed], 1, "cannot reach the Dask scheduler"),
        (["--scheduler", plain], 1, "cannot reach the Dask scheduler"),
    ):
        run = worklist(export[0], tmp_path / "out", *args, timeout_s=120)
        assert (run.code, message in run.stderr, "Traceback" in run.stderr) == (code, True, False), run.stderr
        assert not (tmp_path / "out").exists()


def test_tls_options_are_checked_before_anything_runs(tls_cluster: tuple[DaskCluster, TlsFiles],
                                                      export: tuple[Path, set[str]], tmp_path: Path) -> None:
    cluster, credentials = tls_cluster
    plain = cluster.address.replace("tls://", "tcp://")
    for args, message in (
        (credentials.options(), "--tls-ca-file, --tls-cert and --tls-key need --scheduler"),
        (["--scheduler", cluster.address, "--tls-ca-file", str(credentials.ca)], "--tls-ca-file and --tls-cert"),
        (["--scheduler", cluster.address, "--tls-cert", str(credentials.cert)], "--tls-ca-file and --tls-cert"),
        (["--scheduler", plain, *credentials.options()], "a tls:// scheduler address"),
        (["--scheduler", cluster.address, "--tls-ca-file", str(tmp_path / "nowhere.pem"), "--tls-cert",
          str(credentials.cert)], "cannot load the TLS credentials"),
    ):
        run = worklist(export[0], tmp_path / "out", *args, timeout_s=120)
        assert (run.code, message in run.stderr, "Traceback" in run.stderr) == (2, True, False), run.stderr
