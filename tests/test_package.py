"""The wheel is the product: built from the source, installed into a fresh venv, run from a folder of its own."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import httpx
import pytest
from openapi_spec_validator import validate

from tests.support.examples import BY_NAME
from tests.support.processes import ServerProcess, free_port

pytestmark = pytest.mark.slow  # builds the wheel and serves it from a fresh virtual environment

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "fhir_examples" / "progress-walking" / "request.json"
# The card the example's recorded answer holds (fhir_examples/progress-walking/response.json, `make record`).
[SUMMARY] = [card["summary"] for card in BY_NAME["progress-walking"].response("")["cards"]]
SOURCE = ("cds", "rules", "pyproject.toml", "README.md")


def build_wheel(source: Path, out: Path) -> Path:
    """`pip wheel` of a source tree, as a user or the Dockerfile builds it."""
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out),
                             str(source)], capture_output=True, text=True, timeout=600, env=_pip_env())
    assert result.returncode == 0, result.stderr[-3000:]
    (wheel,) = out.glob("pacing_cds-*.whl")
    return wheel


def _pip_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("PACING_CDS_", "PROMETHEUS_"))}


def _files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and not p.name.endswith(".pyc")}


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv outside the checkout with only the wheel (and its dependencies) installed; its bin folder."""
    base = tmp_path_factory.mktemp("installed")
    wheel = build_wheel(ROOT, base / "dist")
    subprocess.run([sys.executable, "-m", "venv", str(base / "venv")], check=True, timeout=120)
    # --no-compile: byte-compiling every dependency is more than half of the install's time; the commands run
    # afterwards compile only the modules they import.
    result = subprocess.run([str(base / "venv/bin/python"), "-m", "pip", "install", "--quiet", "--no-compile",
                             str(wheel)], capture_output=True, text=True, timeout=900, env=_pip_env())
    assert result.returncode == 0, result.stderr[-3000:]
    return base / "venv" / "bin"


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    """A folder with nothing of the project in it, to run the commands from."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    return folder


def run(bin_dir: Path, cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(bin_dir / "pacing-cds"), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env={"PATH": "/usr/bin:/bin", "HOME": str(cwd), **env})


def test_the_wheel_carries_every_file_under_rules_at_any_depth_and_the_migrations(tmp_path: Path) -> None:
    source = tmp_path / "source"
    for name in SOURCE:
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy
        copy(ROOT / name, source / name)
    nested = source / "rules" / "walking" / "deeper" / "deepest"
    nested.mkdir(parents=True)
    (nested / "evidence.md").write_text("# Why\n")
    (nested / "table.json").write_text('{"a": 1}\n')
    (source / "rules" / "walking" / "rule.yaml").write_text("id: walking\n")
    wheel = build_wheel(source, tmp_path / "dist")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    rules = {f"cds/rules/{name}" for name in _files(source / "rules")}
    assert {"cds/rules/walking/deeper/deepest/evidence.md", "cds/rules/walking/deeper/deepest/table.json",
            "cds/rules/walking/rule.yaml"} <= rules
    assert rules <= names, f"missing from the wheel: {sorted(rules - names)}"
    migrations = {f"cds/store/migrations/{name}" for name in _files(ROOT / "cds/store/migrations")}
    assert "cds/store/migrations/script.py.mako" in migrations
    assert migrations <= names, f"missing from the wheel: {sorted(migrations - names)}"


def test_installed_commands_run_from_another_folder(installed: Path, elsewhere: Path) -> None:
    location = subprocess.run([str(installed / "python"), "-c", "import cds; print(cds.__file__)"], cwd=elsewhere,
                              capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"})
    assert str(installed.parent) in location.stdout and str(ROOT) not in location.stdout

    check = run(installed, elsewhere, "rules", "check")
    assert check.returncode == 0, check.stderr
    assert check.stdout.rstrip().endswith(": OK")

    scenarios = run(installed, elsewhere, "rules", "test")
    assert scenarios.returncode == 0, scenarios.stdout + scenarios.stderr
    assert scenarios.stdout.rstrip().endswith(" passed, 0 failed")

    shutil.copy(EXAMPLE, elsewhere / "request.json")
    evaluated = run(installed, elsewhere, "evaluate", "request.json", "--now", "2026-11-20T09:00:00Z")
    assert evaluated.returncode == 0, evaluated.stderr
    assert f"[info] progress: {SUMMARY}" in evaluated.stdout


def test_rules_dir_still_overrides_the_installed_rules(installed: Path, elsewhere: Path) -> None:
    own = elsewhere / "my-rules"
    shutil.copytree(ROOT / "rules", own)
    (own / "parameters.yaml").unlink()
    check = run(installed, elsewhere, "rules", "check", PACING_CDS_RULES_DIR=str(own))
    assert check.returncode == 1
    assert str(own) in check.stderr and "parameters.yaml" in check.stderr


@pytest.fixture
def served(installed: Path, elsewhere: Path) -> Iterator[str]:
    port = free_port()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(elsewhere), "PACING_CDS_PORT": str(port),
           "PACING_CDS_NOW": "2026-11-20T09:00:00Z", "PYTHONUNBUFFERED": "1"}
    server = ServerProcess([str(installed / "pacing-cds"), "serve"], env=env, cwd=elsewhere,
                           log_path=elsewhere.parent / "serve.log")
    url = f"http://127.0.0.1:{port}"
    try:
        server.wait_ready(f"{url}/healthz", timeout_s=120)
        yield url
    finally:
        server.stop()


def test_installed_service_answers_over_http(served: str, elsewhere: Path) -> None:
    with httpx.Client(base_url=served, timeout=30) as http:
        discovery = http.get("/cds-services").json()
        assert {s["id"] for s in discovery["services"]} == {"pacing-review", "exercise-order-select",
                                                            "exercise-order-sign"}
        answer = http.post("/cds-services/pacing-review", content=EXAMPLE.read_bytes(),
                           headers={"Content-Type": "application/json"})
        assert answer.status_code == 200
        assert [c["summary"] for c in answer.json()["cards"]] == [SUMMARY]
        assert 'pacing_cds_calls_total{service="pacing-review",status="200"} 1.0' in http.get("/metrics").text
        openapi = http.get("/openapi.json").json()
        validate(openapi)
        assert openapi["info"]["version"] == version("pacing-cds"), "the installed distribution's version"
    assert (elsewhere / "var" / "pacing-cds.db").is_file(), "the default database is made in the working folder"
