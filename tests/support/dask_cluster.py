"""A real Dask cluster for tests: `dask scheduler` and `dask worker` processes on 127.0.0.1, plain TCP or mutual
TLS with credentials written for the test."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.processes import ServerProcess, free_port

DASK = Path(sys.executable).parent / "dask"


# A cluster that waits between tests costs next to nothing: without these, its three processes take about 15 % of a
# core doing nothing (the worker's statistical profiler samples every 10 ms, every process checks its event loop every
# 20 ms and its host every 500 ms), seconds of CPU a minute on a 2-core machine running the other tests. None of them
# changes what a task computes or how the cluster connects.
QUIET = {"DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED": "False", "DASK_DISTRIBUTED__ADMIN__TICK__INTERVAL": "1s",
         "DASK_DISTRIBUTED__ADMIN__SYSTEM_MONITOR__INTERVAL": "5s"}


@dataclass(frozen=True)
class TlsFiles:
    """A CA certificate and a certificate with its key, as PEM files."""

    ca: Path
    cert: Path
    key: Path

    def options(self) -> list[str]:
        """The `dask scheduler` / `dask worker` options that name them, which the worklist's options mirror."""
        return ["--tls-ca-file", str(self.ca), "--tls-cert", str(self.cert), "--tls-key", str(self.key)]


def write_credentials(folder: Path) -> TlsFiles:
    """A new self-signed certificate (its own CA) and its key, readable by the owner only: what
    `distributed.security.Security.temporary()` makes for a cluster, written to files as an operator's would be."""
    from distributed.security import Security

    made = Security.temporary()
    folder.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(folder / "ca.pem", folder / "cert.pem", folder / "key.pem")
    for path, text in ((files.ca, made.tls_ca_file), (files.cert, made.tls_client_cert),
                       (files.key, made.tls_client_key)):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(str(text))
    return files


class DaskCluster:
    """A scheduler and `workers` single-threaded workers; all of them end with the test run at the latest. With
    `tls`, every connection is mutual TLS with those credentials (address tls://...)."""

    def __init__(self, workdir: Path, workers: int = 2, tls: TlsFiles | None = None) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.port, self.http_port = free_port(), free_port()
        self.address = f"{'tls' if tls else 'tcp'}://127.0.0.1:{self.port}"
        security = ["--protocol", "tls", *tls.options()] if tls else []  # the same for the scheduler and workers
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PACING_CDS_", "DASK_"))} | QUIET
        # The scheduler stops by itself when nothing has run for 15 minutes, the workers after an hour.
        self.scheduler = ServerProcess(
            [str(DASK), "scheduler", "--host", "127.0.0.1", "--port", str(self.port), *security,
             "--dashboard-address", f"127.0.0.1:{self.http_port}", "--idle-timeout", "900s"],
            env=env, cwd=workdir, log_path=workdir / "scheduler.log")
        self.workers: list[ServerProcess] = []
        try:
            self.scheduler.wait_ready(f"http://127.0.0.1:{self.http_port}/health")
            for index in range(workers):
                self.workers.append(ServerProcess(
                    [str(DASK), "worker", self.address, "--host", "127.0.0.1", *security, "--nthreads", "1",
                     "--nworkers", "1", "--no-dashboard", "--death-timeout", "60", "--lifetime", "3600s", "--memory-limit", "2GiB",
                     "--local-directory", str(workdir / f"worker-{index}"), "--name", f"worker-{index}"],
                    env=env, cwd=workdir, log_path=workdir / f"worker-{index}.log"))
            self.wait_for_workers(workers)
        except Exception:
            self.stop()
            raise

    def connected_workers(self) -> int:
        counts = httpx.get(f"http://127.0.0.1:{self.http_port}/json/counts.json", timeout=5.0).json()
        return int(counts["workers"])

    def wait_for_workers(self, n: int, timeout_s: float = 90.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.connected_workers() >= n:
                return
            for worker in self.workers:
                if worker.proc.poll() is not None:
                    raise RuntimeError(f"dask worker exited with {worker.proc.returncode}:\n{worker.log()}")
            time.sleep(0.2)
        raise RuntimeError(f"{n} dask workers not connected within {timeout_s} s:\n{self.scheduler.log()}")

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.scheduler.stop()
