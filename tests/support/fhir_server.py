"""The real FHIR server of the tests: sekmet-fhir, pinned, in its own virtual environment."""

from __future__ import annotations

import fcntl
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.support.processes import ServerProcess, on_a_free_port

SEKMET = "sekmet-fhir==0.1.1"
ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".venv-fhir"
TOKEN = "test-fhir-access-token-4f1c"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


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


@dataclass(frozen=True)
class SmartClient:
    """A SMART Backend Services client registered at sekmet (server_auth.smart_clients) by its public JWK.

    sekmet accepts RS384, ES384, RS256 and ES256 assertions (sekmet/auth/server.py ALGS) and grants only scopes
    covered by `scopes` (the client's registration, sekmet's default "system/*.*")."""

    client_id: str
    kid: str
    algorithm: str
    private_key: PrivateKey
    scopes: str = "system/*.*"

    @classmethod
    def generate(cls, client_id: str, algorithm: str = "RS384", scopes: str = "system/*.*",
                 kid: str | None = None) -> SmartClient:
        """A fresh key pair: RSA 2048 for RS*, P-384 for ES384, P-256 for ES256."""
        key: PrivateKey
        if algorithm.startswith("ES"):
            key = ec.generate_private_key(ec.SECP384R1() if algorithm == "ES384" else ec.SECP256R1())
        elif algorithm.startswith("RS"):
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        else:
            raise ValueError(f"unsupported algorithm {algorithm}")
        return cls(client_id, kid or f"{client_id}-{algorithm.lower()}", algorithm, key, scopes)

    def public_jwk(self) -> dict[str, Any]:
        algorithm = jwt.get_algorithm_by_name(self.algorithm)
        jwk: dict[str, Any] = json.loads(algorithm.to_jwk(self.private_key.public_key()))
        return {**jwk, "alg": self.algorithm, "kid": self.kid, "use": "sig", "key_ops": ["verify"]}

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.public_jwk()]}

    def assertion(self, token_url: str, *, lifetime_s: int = 300, jti: str | None = None,
                  claims: dict[str, Any] | None = None, headers: dict[str, Any] | None = None) -> str:
        """The signed client_assertion JWT: iss = sub = client_id, aud = token endpoint, exp, jti; kid in the
        header. `claims`/`headers` override or add members (None values remove them), to build bad assertions."""
        now = int(time.time())
        body: dict[str, Any] = {"iss": self.client_id, "sub": self.client_id, "aud": token_url,
                                "exp": now + lifetime_s, "jti": jti or uuid.uuid4().hex}
        head: dict[str, Any] = {"kid": self.kid, "typ": "JWT"}
        for target, changes in ((body, claims), (head, headers)):
            for name, value in (changes or {}).items():
                if value is None:
                    target.pop(name, None)
                else:
                    target[name] = value
        return jwt.encode(body, self.private_key, algorithm=self.algorithm, headers=head)

    def token_request(self, token_url: str, scope: str | None = "system/*.read", **assertion_args: Any
                      ) -> dict[str, str]:
        """The form of a SMART Backend Services token request (client_credentials + private_key_jwt)."""
        form = {"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": self.assertion(token_url, **assertion_args)}
        if scope is not None:
            form["scope"] = scope
        return form


class FhirServer:
    """A running sekmet on 127.0.0.1 that requires the bearer token TOKEN.

    Optionally (keyword arguments; the default server is unchanged) it also runs SMART Backend Services: the
    clients in `smart_client`/`smart_clients` are registered by their JWKS, `token_lifetime_s` sets the access
    tokens' lifetime (sekmet's default 3600 s), `static_token=False` turns the bearer TOKEN off (SMART only).
    `bulk_delay_s` sets how long a finished $export job still answers 202 (sekmet: min(1, simulator.delay_seconds),
    1 s by default). $export itself is always on in sekmet."""

    def __init__(self, workdir: Path, *, smart_client: SmartClient | None = None,
                 smart_clients: Sequence[SmartClient] = (), token_lifetime_s: int | None = None,
                 static_token: bool = True, bulk_delay_s: float | None = None) -> None:
        if not static_token and not (smart_client or smart_clients):
            raise ValueError("static_token=False needs a SMART client to load data with")
        self.sekmet = ensure_venv()
        self.smart_clients = [*([smart_client] if smart_client else []), *smart_clients]
        self.static_token = static_token
        self.data_dir = workdir / "data"  # sekmet writes $export files to data_dir/bulk/<job id>/<Type>.ndjson
        workdir.mkdir(parents=True, exist_ok=True)
        simulator = "simulator:\n  enabled: false\n"
        if bulk_delay_s is not None:
            simulator += f"  delay_seconds: {bulk_delay_s}\n"
        auth = f"server_auth:\n  types: [bearer]\n  tokens: [{TOKEN}]\n"
        if self.smart_clients or not static_token or token_lifetime_s is not None:
            auth = _smart_auth(self.smart_clients, static_token, token_lifetime_s)
        self.process = on_a_free_port(lambda port: self._start(port, workdir, simulator + auth))
        headers = {"Authorization": f"Bearer {TOKEN}"} if static_token else {}
        self.http = httpx.Client(base_url=self.base_url + "/", headers=headers, timeout=30.0)

    def _start(self, port: int, workdir: Path, settings: str) -> ServerProcess:
        """sekmet on this port, with these settings (PortTaken when another process took the port first)."""
        self.port = port
        self.root_url = f"http://127.0.0.1:{self.port}"
        self.base_url = f"{self.root_url}/fhir"
        self.token_url = f"{self.root_url}/auth/token"
        config = workdir / "settings.yaml"
        config.write_text(f"base_url: {self.base_url}\nhost: 127.0.0.1\nport: {self.port}\n"
                          f"data_dir: {self.data_dir}\n{settings}log_inbound: false\n")
        process = ServerProcess([str(self.sekmet), "serve", "--config", str(config)], env=_env(),
                                cwd=workdir, log_path=workdir / "sekmet.log")
        process.wait_ready(f"{self.base_url}/metadata")
        return process

    def load(self, resources: list[dict[str, Any]]) -> None:
        """PUT every resource in one transaction Bundle."""
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
            for r in resources]}
        headers = {"Content-Type": "application/fhir+json"}
        if not self.static_token:  # SMART only: a token of the first client
            token = self.smart_token(self.smart_clients[0], scope="system/*.*")["access_token"]
            headers["Authorization"] = f"Bearer {token}"
        response = self.http.post("", json=bundle, headers=headers)
        response.raise_for_status()

    def load_group(self, group_id: str, patient_ids: Iterable[str], name: str | None = None) -> dict[str, Any]:
        """PUT a Group of the given Patients (sekmet's Group/[id]/$export exports the Patients its `member`
        entries reference, with everything that references them)."""
        group = {"resourceType": "Group", "id": group_id, "type": "person", "actual": True,
                 "name": name or f"Group {group_id}",
                 "member": [{"entity": {"reference": f"Patient/{pid}"}} for pid in patient_ids]}
        self.load([group])
        return group

    def bulk_file(self, url: str) -> Path:
        """The file on disk behind a manifest's file URL ({base_url}/bulk-files/<job id>/<name>)."""
        job_id, name = url.rsplit("/", 2)[-2:]
        return self.data_dir / "bulk" / job_id / name

    def smart_token(self, client: SmartClient, scope: str | None = "system/*.read",
                    **assertion_args: Any) -> dict[str, Any]:
        """POST a client_credentials token request signed by `client`; the token response (raises on errors)."""
        response = httpx.post(self.token_url, data=client.token_request(self.token_url, scope, **assertion_args),
                              timeout=30.0)
        response.raise_for_status()
        token: dict[str, Any] = response.json()
        return token

    def stop(self) -> None:
        self.http.close()
        self.process.stop()


def _smart_auth(clients: Sequence[SmartClient], static_token: bool, token_lifetime_s: int | None) -> str:
    """server_auth with SMART Backend Services (sekmet/config.py ServerAuth, SmartClient)."""
    types = ["bearer", "smart"] if static_token else ["smart"]
    lines = ["server_auth:", f"  types: [{', '.join(types)}]"]
    if static_token:
        lines.append(f"  tokens: [{TOKEN}]")
    if token_lifetime_s is not None:
        lines.append(f"  token_lifetime: {int(token_lifetime_s)}")
    lines.append("  smart_clients:" if clients else "  smart_clients: []")
    for client in clients:
        lines += [f"    - client_id: {json.dumps(client.client_id)}",
                  f"      scopes: {json.dumps(client.scopes)}",
                  f"      jwks: {json.dumps(client.jwks())}"]
    return "\n".join(lines) + "\n"


def _env() -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PACING_CDS_", "SEKMET_"))}
    env["PYTHONUNBUFFERED"] = "1"
    return env
