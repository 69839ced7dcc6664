"""Backing services the tests start themselves on 127.0.0.1: redis-server and PostgreSQL (Debian packages).

Missing on a developer's machine, their tests are skipped with the reason; under CI (CI=true) a missing one
fails, since .ci/run installs them.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.support.processes import ServerProcess, free_port


def require(program: str, hint: str) -> str:
    """The program's path, or skip (fail under CI) naming what to install."""
    found = shutil.which(program) or next((str(p) for p in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{program}"))
                                           if p.exists()), None)
    if found is None:
        message = f"{program} not installed ({hint})"
        if os.environ.get("CI"):
            pytest.fail(message + "; .ci/run installs it")
        pytest.skip(message)
    return found


class RedisServer:
    def __init__(self, workdir: Path) -> None:
        binary = require("redis-server", "apt-get install redis-server")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        workdir.mkdir(parents=True, exist_ok=True)
        self.process = ServerProcess([binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
                                      "--appendonly", "no", "--dir", str(workdir)],
                                     env={"PATH": "/usr/bin:/bin"}, cwd=workdir, log_path=workdir / "redis.log")
        deadline = time.monotonic() + 20
        import redis

        while True:
            try:
                redis.Redis.from_url(self.url).ping()
                break
            except redis.RedisError:
                if time.monotonic() > deadline or self.process.proc.poll() is not None:
                    raise RuntimeError(f"redis-server did not start:\n{self.process.log()}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        self.process.stop()


class PostgresServer:
    """A throw-away cluster: initdb, then postgres on a free port; run as the postgres user when we are root."""

    def __init__(self, workdir: Path) -> None:
        initdb = str(Path(require("initdb", "apt-get install postgresql")).resolve())
        postgres = str(Path(initdb).parent / "postgres")
        self.port = free_port()
        as_user: list[str] = []
        if os.geteuid() == 0:  # PostgreSQL will not run as root: a folder the postgres user can reach
            workdir = Path(tempfile.mkdtemp(prefix="pacing-cds-pg-"))
            user = pwd.getpwnam("postgres")
            os.chown(workdir, user.pw_uid, user.pw_gid)
            as_user = [shutil.which("runuser") or "/usr/sbin/runuser", "-u", "postgres", "--"]
        self.workdir = workdir
        data = workdir / "pgdata"
        workdir.mkdir(parents=True, exist_ok=True)
        subprocess.run([*as_user, initdb, "-D", str(data), "-U", "cds", "--auth=trust", "-E", "UTF8"],
                       check=True, capture_output=True, timeout=120)
        self.url = f"postgresql+psycopg://cds@127.0.0.1:{self.port}/postgres"
        self.process = ServerProcess([*as_user, postgres, "-D", str(data), "-p", str(self.port), "-k", str(workdir),
                                      "-c", "listen_addresses=127.0.0.1", "-c", "fsync=on"],
                                     env={"PATH": "/usr/bin:/bin"}, cwd=workdir, log_path=workdir / "postgres.log")
        import psycopg

        deadline = time.monotonic() + 30
        while True:
            try:
                psycopg.connect(f"host=127.0.0.1 port={self.port} user=cds dbname=postgres", connect_timeout=2).close()
                break
            except psycopg.Error:
                if time.monotonic() > deadline or self.process.proc.poll() is not None:
                    raise RuntimeError(f"postgres did not start:\n{self.process.log()}") from None
                time.sleep(0.1)

    def database(self, name: str) -> str:
        """A fresh database on this cluster, as an SQLAlchemy URL."""
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=cds dbname=postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql+psycopg://cds@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        self.process.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def fresh_database(backend: str, folder: Path, request: Any) -> str:
    """The URL of an empty database on `backend` ("sqlite": a file in `folder`; "postgresql": a new database of the
    session's PostgreSQL server, started by its fixture)."""
    if backend == "sqlite":
        return f"sqlite:///{folder / 'cds.db'}"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.database(f"cds_{uuid.uuid4().hex[:8]}")
