"""fhirServer is no request forgery tool: only allow-listed servers are called, in whatever spelling a host is
written, and a refused one gets the same 412 whatever it would have answered, without a connection opened."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import jwt
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import ec

from tests.conftest import LiveService
from tests.support import data
from tests.support.processes import free_port

Start = Callable[..., LiveService]
PV = "/cds-services/pacing-review"
REFUSED = "fhirServer is not an allowed FHIR server"
SPELLINGS = ["127.0.0.1", "localhost", "0.0.0.0", "2130706433", "0x7f000001", "127.1", "[::1]", "0177.0.0.1",
             "LOCALHOST.", "127.0.0.1.nip.io"]


class Canary:
    """A TCP listener on 127.0.0.1 and [::1] that counts the connections made to it."""

    def __init__(self) -> None:
        self.port = free_port()
        self.accepted = 0
        self._stop = threading.Event()
        self._sockets = []
        for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, self.port))
            sock.listen(16)
            sock.settimeout(0.2)
            self._sockets.append(sock)
            threading.Thread(target=self._accept, args=(sock,), daemon=True).start()

    def _accept(self, sock: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = sock.accept()
            except (TimeoutError, OSError):
                continue
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        time.sleep(0.3)
        for sock in self._sockets:
            sock.close()


@pytest.fixture
def canary() -> Iterator[Canary]:
    listener = Canary()
    yield listener
    listener.close()


def text_of(response: httpx.Response) -> str:
    return response.json()["issue"][0]["details"]["text"]


def test_no_spelling_of_an_internal_host_is_called(live_service: Start, canary: Canary, http: httpx.Client) -> None:
    service = live_service(fhir_servers="https://ehr.example.org/fhir")
    texts = set()
    for host in SPELLINGS:
        body = data.patient_view("s1", fhir_server=f"http://{host}:{canary.port}/fhir", token="stolen-token")
        response = http.post(service.url + PV, json=body)
        assert response.status_code == 412, (host, response.text)
        texts.add(text_of(response))
    closed = data.patient_view("s1", fhir_server=f"http://127.0.0.1:{free_port()}/fhir", token="stolen-token")
    texts.add(text_of(http.post(service.url + PV, json=closed)))
    assert texts == {REFUSED}, "an open port and a closed one are told apart by nothing"
    assert canary.accepted == 0, "no connection was opened"


def test_user_information_in_fhir_server_is_refused_even_on_an_allowed_host(live_service: Start, canary: Canary,
                                                                             http: httpx.Client) -> None:
    service = live_service()  # development: loopback allowed
    body = data.patient_view("s2", fhir_server=f"http://user:pw@127.0.0.1:{canary.port}/fhir")
    response = http.post(service.url + PV, json=body)
    assert response.status_code == 412 and text_of(response) == REFUSED
    assert canary.accepted == 0


def test_production_allows_nothing_until_configured(tmp_path: Path, canary: Canary) -> None:
    from cds import create_app
    from cds.settings import load_settings

    app = create_app(load_settings(database_url=f"sqlite:///{tmp_path / 'p.db'}", env="production", auth="disabled",
                                   public_base_url="https://cds.example.org"))
    try:
        body = data.patient_view("s3", fhir_server=f"https://127.0.0.1:{canary.port}/fhir")
        response = app.test_client().post(PV, json=body)
        assert response.status_code == 412 and response.get_json()["issue"][0]["details"]["text"] == REFUSED
        full = data.patient_view("s3", data.full_prefetch("s3"), fhir_server="https://ehr.example.org/fhir")
        assert app.test_client().post(PV, json=full).status_code == 200, "no fetch needed: no refusal"
    finally:
        app.extensions["pacing_cds"].close()
    assert canary.accepted == 0


def test_each_issuer_has_its_own_list(live_service: Start, canary: Canary, tmp_path: Path,
                                      fault_server: Callable[[str], str], http: httpx.Client) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = {**json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key())), "kid": "k1"}
    allowed = fault_server("500")
    issuers = tmp_path / "issuers.yaml"
    issuers.write_text(yaml.safe_dump({"issuers": [
        {"iss": "https://a.example.org", "jwks": {"keys": [jwk]}, "fhir_servers": [allowed]},
        {"iss": "https://b.example.org", "jwks": {"keys": [jwk]}, "fhir_servers": ["https://ehr.b.example.org"]}]}))
    base = "https://cds.example.org"
    service = live_service(issuers_file=str(issuers), public_base_url=base)

    def call(iss: str, server: str) -> httpx.Response:
        claims = {"iss": iss, "aud": base + PV, "exp": int(time.time()) + 60, "iat": int(time.time()),
                  "jti": str(uuid.uuid4())}
        token = jwt.encode(claims, key, algorithm="ES256", headers={"kid": "k1", "typ": "JWT"})
        return http.post(service.url + PV, json=data.patient_view("s4", fhir_server=server),
                         headers={"Authorization": f"Bearer {token}"})

    first = call("https://a.example.org", allowed)
    assert first.status_code == 412 and "HTTP 500" in text_of(first), "issuer a reaches its own server"
    second = call("https://b.example.org", allowed)
    assert second.status_code == 412 and text_of(second) == REFUSED, "issuer b may not name a's server"
    third = call("https://b.example.org", f"http://127.0.0.1:{canary.port}/fhir")
    assert text_of(third) == REFUSED and canary.accepted == 0


def test_next_links_leave_neither_the_server_nor_the_list(canary: Canary) -> None:
    from cds.fhir.allowlist import AllowList
    from cds.fhir.client import FhirClient

    client = FhirClient(timeout_s=2.0, max_pages=5)
    first = data.searchset([])
    first["link"] = [{"relation": "next", "url": f"http://127.0.0.1:{canary.port}/fhir/Observation?page=2"}]
    try:
        results = client.fetch_all(f"http://127.0.0.1:{canary.port}/fhir", "tok", {"pain": ("", first)},
                                   time.monotonic() + 3,
                                   AllowList.parse(["https://ehr.example.org"]).allows)
    finally:
        client.close()
    assert "not followed" in " ".join(results["pain"].notes)  # type: ignore[union-attr]
    assert canary.accepted == 0
