"""Shared fixtures: settings on a temporary database, the app in-process, real FHIR and CDS servers."""

from __future__ import annotations

import os
import shutil
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from flask import Flask
from flask.testing import FlaskClient

from cds import create_app
from cds.engine import Knowledge, RuleEngine, load_knowledge
from cds.settings import Settings, load_settings
from tests.support import data
from tests.support.backing import PostgresServer, RedisServer
from tests.support.fault_server import start as fault_server_process
from tests.support.fhir_server import FhirServer
from tests.support.processes import ServerProcess, on_a_free_port

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


# A test that uses one of these starts a real process (a server, a cluster, a browser): `make check` skips it.
PROCESS_FIXTURES = {"fhir_server", "redis_server", "postgres_server", "live_service", "fault_server", "chart_service",
                    "browser", "dask_cluster", "worklist", "cluster_run", "generated"}


# The modules that take longest, longest first (about 20 s to 2 minutes each on 2 cores). `make test` runs the
# modules in parallel, a module on one worker (so its module-scoped servers, image or wheel are made once); a worker
# takes the next module in collection order when it is free, so these go first and the short ones fill in after.
LONGEST_FIRST = ("test_container.py", "test_package.py", "store/test_durability.py", "panel/test_incremental.py",
                 "panel/test_impact.py", "invariants/test_invariants.py", "api/test_auth.py",
                 "security/test_logs_and_data_errors.py", "api/test_service_call.py", "panel/test_hostile_export.py",
                 "panel/test_dask_security.py", "fhir/test_faults.py", "test_end_to_end.py", "panel/test_worklist.py",
                 "test_golden.py")


def _start_rank(item: pytest.Item) -> int:
    relative = item.path.relative_to(ROOT / "tests").as_posix()
    return LONGEST_FIRST.index(relative) if relative in LONGEST_FIRST else len(LONGEST_FIRST)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark slow every test that starts a process through a fixture (its own module may mark more); the longest
    modules first."""
    moved = [name for name in LONGEST_FIRST if not (ROOT / "tests" / name).is_file()]
    if moved:
        raise pytest.UsageError(f"tests/conftest.py LONGEST_FIRST names modules that are not there: {moved}")
    for item in items:
        if PROCESS_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
    items.sort(key=_start_rank)  # stable: the order within a module, and of the other modules, is kept


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests see only the PACING_CDS_* variables they set themselves."""
    for name in list(os.environ):
        if name.startswith("PACING_CDS_"):
            monkeypatch.delenv(name)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """The app's settings on a temporary database, as of the day the test data are written for (tests never
    depend on today's date)."""
    return load_settings(database_url=f"sqlite:///{tmp_path / 'cds.db'}", now=data.NOW)


@pytest.fixture
def app(settings: Settings) -> Iterator[Flask]:
    application = create_app(settings)
    yield application
    application.extensions["pacing_cds"].close()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def rules_copy(tmp_path: Path) -> Path:
    """A copy of rules/ a test may break."""
    target = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", target)
    return target


@pytest.fixture
def rules_with_examples(tmp_path: Path) -> Path:
    """A copy of rules/ with a copy of fhir_examples/ beside it, as in a checkout: both a test may break."""
    shutil.copytree(ROOT / "fhir_examples", tmp_path / "fhir_examples")
    target = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", target)
    return target


@pytest.fixture(scope="session")
def knowledge() -> Knowledge:
    """The project's rules/, loaded once."""
    return load_knowledge(ROOT / "rules")


@pytest.fixture(scope="session")
def engine(knowledge: Knowledge) -> RuleEngine:
    return RuleEngine(knowledge)


@pytest.fixture(scope="session")
def fhir_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FhirServer]:
    server = FhirServer(tmp_path_factory.mktemp("sekmet"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    server = PostgresServer(tmp_path_factory.mktemp("postgres"))
    yield server
    server.stop()


class LiveService:
    """`pacing-cds serve` (gunicorn) as a real process on 127.0.0.1."""

    def __init__(self, workdir: Path, env: dict[str, str], port: int) -> None:
        self.workdir, self.env, self.port = workdir, env, port
        self.url = f"http://127.0.0.1:{port}"
        self.process: ServerProcess | None = None

    def start(self, command: list[str] | None = None) -> LiveService:
        args = command or [str(VENV_BIN / "pacing-cds"), "serve"]
        self.process = ServerProcess(args, env=self.env, cwd=self.workdir, log_path=self.workdir / "service.log")
        self.process.wait_ready(f"{self.url}/livez")  # up, even when a test makes it not ready (Redis down)
        return self

    def stop(self, sig: int | None = None) -> None:
        """By default gunicorn's quick shutdown (SIGQUIT), then a kill after 3 s: a test has its answers, and a
        graceful stop waits up to 10 s for any connection a client kept alive."""
        if self.process is not None:
            self.process.stop(signal.SIGQUIT, grace_s=3.0) if sig is None else self.process.stop(sig)
            self.process = None

    def log(self) -> str:
        return (self.workdir / "service.log").read_text(errors="replace")


@pytest.fixture
def live_service(tmp_path: Path) -> Iterator[Callable[..., LiveService]]:
    """Factory: start the service with extra PACING_CDS_* settings; every one started is stopped after the test."""
    started: list[LiveService] = []

    def on(port: int, settings: dict[str, str]) -> LiveService:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PACING_CDS_")}
        env.update({"PACING_CDS_PORT": str(port), "PACING_CDS_HOST": "127.0.0.1", "PACING_CDS_WORKERS": "2",
                    "PACING_CDS_DATABASE_URL": f"sqlite:///{tmp_path / 'live.db'}", "PYTHONUNBUFFERED": "1"})
        if "now" not in settings and settings.get("env") != "production":
            env["PACING_CDS_NOW"] = data.NOW.isoformat()  # the day the test data are written for
        env.update({f"PACING_CDS_{k.upper()}": v for k, v in settings.items()})
        return LiveService(tmp_path, env, port).start()

    def start(**settings: str) -> LiveService:
        """The service on the port named, else on a free one (another, should that one be taken first)."""
        service = (on(int(settings.pop("port")), settings) if "port" in settings
                   else on_a_free_port(lambda port: on(port, settings)))
        started.append(service)
        return service

    yield start
    for service in started:
        service.stop()


@pytest.fixture
def fault_server(tmp_path: Path) -> Iterator[Callable[[str], str]]:
    """Factory: a misbehaving FHIR server process (tests/support/fault_server.py) in a MODE; returns its base."""
    started: list[ServerProcess] = []

    def on(port: int, mode: str) -> tuple[ServerProcess, int]:
        return fault_server_process(port, mode, tmp_path / f"fault-{mode}-{port}.log"), port

    def start(mode: str) -> str:
        server, port = on_a_free_port(lambda port: on(port, mode))
        started.append(server)
        return f"http://127.0.0.1:{port}/fhir"

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30.0) as client:
        yield client
