"""The real FHIR server of the tests: sekmet-fhir, pinned, in its own virtual environment."""

from __future__ import annotations

import fcntl
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from tests.support.processes import ServerProcess, free_port

SEKMET = "sekmet-fhir==0.1.1"
ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".venv-fhir"
TOKEN = "test-fhir-access-token-4f1c"


def ensure_venv() -> Path:
    """Create .venv-fhir with sekmet-fhir once; later runs reuse it."""
    marker = VENV / f".installed-{SEKMET}"
    if marker.exists():
        return VENV / "bin" / "sekmet"
    VENV.parent.mkdir(parents=True, exist_ok=True)
    with open(ROOT / ".venv-fhir.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not marker.exists():
            subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
            subprocess.run([str(VENV / "bin" / "python"), "-m", "pip", "install", "--quiet", SEKMET],
                           check=True)
            marker.touch()
    return VENV / "bin" / "sekmet"


class FhirServer:
    """A running sekmet on 127.0.0.1 that requires the bearer token TOKEN."""

    def __init__(self, workdir: Path) -> None:
        sekmet = ensure_venv()
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/fhir"
        workdir.mkdir(parents=True, exist_ok=True)
        config = workdir / "settings.yaml"
        config.write_text(
            f"base_url: {self.base_url}\n"
            f"host: 127.0.0.1\nport: {self.port}\n"
            f"data_dir: {workdir / 'data'}\n"
            "simulator:\n  enabled: false\n"
            f"server_auth:\n  types: [bearer]\n  tokens: [{TOKEN}]\n"
            "log_inbound: false\n"
        )
        self.process = ServerProcess([str(sekmet), "serve", "--config", str(config)], env=_env(),
                                     cwd=workdir, log_path=workdir / "sekmet.log")
        self.process.wait_ready(f"{self.base_url}/metadata")
        self.http = httpx.Client(base_url=self.base_url + "/", headers={"Authorization": f"Bearer {TOKEN}"},
                                 timeout=30.0)

    def load(self, resources: list[dict[str, Any]]) -> None:
        """PUT every resource in one transaction Bundle."""
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
            for r in resources]}
        response = self.http.post("", json=bundle, headers={"Content-Type": "application/fhir+json"})
        response.raise_for_status()

    def stop(self) -> None:
        self.http.close()
        self.process.stop()


def _env() -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PACING_CDS_", "SEKMET_"))}
    env["PYTHONUNBUFFERED"] = "1"
    return env
