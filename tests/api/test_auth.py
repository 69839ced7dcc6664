"""CDS client authentication with real keys and signed tokens (ES384, RS384), and the spec's own example."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from flask import Flask
from flask.testing import FlaskClient

from cds import create_app
from cds.auth.replay import MemoryReplayCache
from cds.auth.tokens import Authenticator, AuthError, IssuerConfig
from cds.settings import SettingsError, load_settings
from tests.support import data

BASE = "https://cds.example.org"
ISS = "https://ehr.example.org"
SPEC_JWKS = {"keys": [{"kty": "EC", "use": "sig", "crv": "P-384", "kid": "example-kid", "alg": "ES384",
                       "x": "46SDH7Znh821wblCBglA61sNE9ZrHYKKt3qRtRTmSXyOI_FIGBLWrWa0GPUkDCEk",
                       "y": "XMcRuuoGW7CXjQdy-F5i3FeBE0x9hPLdeFdSoDd3ELmx404tLX0VRRcqzAsPhXcI"}]}
SPEC_PRIVATE = {**SPEC_JWKS["keys"][0], "d": "SeFXUXda8UomZ8GFUl7HH_Oi15rIbfMcsWj9ecIsDR8kLbqsEz2CGNgwy_IcILxy"}
SPEC_TOKEN = (
    "eyJhbGciOiJFUzM4NCIsInR5cCI6IkpXVCIsImtpZCI6ImV4YW1wbGUta2lkIiwiamt1IjoiaHR0cHM6Ly9maGlyLWVoci5leGFtcGxlLmNvbS9qd2"
    "tfdXJpIn0.eyJpc3MiOiJodHRwczovL2ZoaXItZWhyLmV4YW1wbGUuY29tLyIsImF1ZCI6Imh0dHBzOi8vY2RzLmV4YW1wbGUub3JnL2Nkcy1zZXJ2a"
    "WNlcy9zb21lLXNlcnZpY2UiLCJleHAiOjE0MjI1Njg4NjAsImlhdCI6MTMxMTI4MDk3MCwianRpIjoiZWUyMmIwMjEtZTFiNy00NjExLWJhNWItOGV"
    "lYzZhMzNhYzFlIiwidGVuYW50IjoiMmRkZDZjM2EtOGU5YS00NGM2LWEzMDUtNTIxMTFhZDMwMmEyIn0.d1WfLjGRKlcWB94l9do4cM8REXeYJLL6SG"
    "UBO8VHZhfM8mwKYP70EMxJ67War4TQblEpaQrp11wx5p7oPFm2ETYgCicS84vXWEIYTdjooZdooCSDf2L8-i4awdoUwiEb")

EC_KEY = ec.generate_private_key(ec.SECP384R1())
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_jwk(key: Any, kid: str) -> dict[str, Any]:
    algorithm = jwt.algorithms.ECAlgorithm if isinstance(key, ec.EllipticCurvePrivateKey) else jwt.algorithms.RSAAlgorithm
    jwk = json.loads(algorithm.to_jwk(key.public_key()))
    return {**jwk, "kid": kid, "use": "sig"}


def token(path: str = "/cds-services", key: Any = EC_KEY, alg: str = "ES384", kid: str = "ec-1",
          headers: dict[str, Any] | None = None, **claims: Any) -> str:
    now = int(time.time())
    payload = {"iss": ISS, "aud": BASE + path, "exp": now + 300, "iat": now, "jti": str(uuid.uuid4()), **claims}
    payload = {k: v for k, v in payload.items() if v is not None}
    return jwt.encode(payload, key, algorithm=alg, headers={"kid": kid, "typ": "JWT", **(headers or {})})


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


class JwksServer:
    """A real JWK Set endpoint on 127.0.0.1 that counts its requests."""

    def __init__(self) -> None:
        self.jwks: dict[str, Any] = {"keys": []}
        self.hits = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.hits += 1
                body = json.dumps(outer.jwks).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jwks.json"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def jwks_server() -> Iterator[JwksServer]:
    server = JwksServer()
    yield server
    server.stop()


@pytest.fixture
def issuers_file(tmp_path: Path, jwks_server: JwksServer) -> Path:
    path = tmp_path / "issuers.yaml"
    path.write_text(yaml.safe_dump({"issuers": [
        {"iss": ISS, "jwks": {"keys": [public_jwk(EC_KEY, "ec-1"), public_jwk(RSA_KEY, "rsa-1")]},
         "jwks_url": jwks_server.url},
        {"iss": "https://tenant.example.org", "jwks": {"keys": [public_jwk(EC_KEY, "ec-1")]}, "tenants": ["t-1"]},
    ]}))
    return path


@pytest.fixture
def secured(tmp_path: Path, issuers_file: Path) -> Iterator[Flask]:
    app = create_app(load_settings(database_url=f"sqlite:///{tmp_path / 'a.db'}", issuers_file=issuers_file,
                                   public_base_url=BASE))
    yield app
    app.extensions["pacing_cds"].close()


@pytest.fixture
def client(secured: Flask) -> FlaskClient:
    return secured.test_client()


def call(client: FlaskClient, tok: str | None, path: str = "/cds-services/pacing-review") -> Any:
    headers = bearer(tok) if tok else {}
    body = data.patient_view("p1", data.full_prefetch("p1"))
    return client.post(path, json=body, headers=headers)


@pytest.mark.parametrize(("key", "alg", "kid"), [(EC_KEY, "ES384", "ec-1"), (RSA_KEY, "RS384", "rsa-1")])
def test_signed_tokens_are_accepted(client: FlaskClient, key: Any, alg: str, kid: str) -> None:
    assert call(client, token("/cds-services/pacing-review", key, alg, kid)).status_code == 200


def test_every_endpoint_needs_a_token_and_its_own_audience(client: FlaskClient) -> None:
    assert client.get("/cds-services").status_code == 401
    assert client.get("/cds-services", headers=bearer(token("/cds-services"))).status_code == 200
    feedback = data.spec_example("feedback-accepted.json")
    path = "/cds-services/pacing-review/feedback"
    assert client.post(path, json=feedback).status_code == 401
    assert client.post(path, json=feedback, headers=bearer(token(path))).status_code == 200
    assert client.post(path, json=feedback, headers=bearer(token("/cds-services"))).status_code == 401
    assert call(client, None).status_code == 401


def test_health_and_preflight_need_no_token(client: FlaskClient) -> None:
    assert client.get("/healthz").status_code == 200
    preflight = client.options("/cds-services/pacing-review", headers={
        "Origin": "https://sandbox.cds-hooks.org", "Access-Control-Request-Method": "POST"})
    assert preflight.status_code == 204


def hs256_with_public_key() -> str:
    """The classic confusion attack: HMAC keyed with the issuer's public key."""
    pem = json.dumps(public_jwk(EC_KEY, "ec-1"))
    now = int(time.time())
    header = {"kid": "ec-1", "typ": "JWT", "alg": "HS256"}
    payload = {"iss": ISS, "aud": BASE + "/cds-services/pacing-review", "exp": now + 300, "iat": now, "jti": "x"}
    import base64
    import hashlib
    import hmac

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    signing = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    return f"{signing}.{b64(hmac.new(pem.encode(), signing.encode(), hashlib.sha256).digest())}"


def unsigned() -> str:
    now = int(time.time())
    return jwt.encode({"iss": ISS, "aud": BASE + "/cds-services/pacing-review", "exp": now + 300, "iat": now,
                       "jti": "n"}, None, algorithm="none", headers={"kid": "ec-1", "typ": "JWT"})


P = "/cds-services/pacing-review"


@pytest.mark.parametrize(("name", "make"), [
    ("alg none", unsigned),
    ("HS256 keyed with the public key", hs256_with_public_key),
    ("unknown issuer", lambda: token(P, iss="https://other-ehr.example.org")),
    ("expired beyond leeway", lambda: token(P, exp=int(time.time()) - 61, iat=int(time.time()) - 400)),
    ("issued in the future", lambda: token(P, iat=int(time.time()) + 120)),
    ("not yet valid", lambda: token(P, nbf=int(time.time()) + 120)),
    ("no jti", lambda: token(P, jti=None)),
    ("no exp", lambda: token(P, exp=None)),
    ("lifetime over an hour", lambda: token(P, exp=int(time.time()) + 7200)),
    ("typ not JWT", lambda: token(P, headers={"typ": "at+jwt"})),
    ("no kid", lambda: jwt.encode({"iss": ISS, "aud": BASE + P, "exp": int(time.time()) + 60,
                                   "iat": int(time.time()), "jti": "k"}, EC_KEY, algorithm="ES384")),
    ("unknown kid", lambda: token(P, kid="no-such-key")),
    ("RS384 header on an EC key", lambda: token(P, key=RSA_KEY, alg="RS384", kid="ec-1")),
    ("signed by another key", lambda: token(P, key=ec.generate_private_key(ec.SECP384R1()))),
    ("tenant not allowed", lambda: token(P, iss="https://tenant.example.org", tenant="t-2")),
    ("tenant missing", lambda: token(P, iss="https://tenant.example.org")),
    ("garbage", lambda: "not.a.jwt"),
])
def test_bad_tokens_get_a_bare_401(client: FlaskClient, name: str, make: Any) -> None:
    response = call(client, make())
    assert response.status_code == 401, name
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.get_json()["issue"][0]["details"]["text"] == "authentication required"


@pytest.mark.parametrize("aud", [BASE + "/cds-services/exercise-order-sign", "https://evil.example.com" + P,
                                 BASE.replace("https", "http") + P])
def test_a_wrong_audience_is_named_beside_the_one_expected(client: FlaskClient, aud: str) -> None:
    """An integrator who set the wrong base URL sees what the token said and what this endpoint is, never the
    token itself."""
    sent = token(P, aud=aud)
    response = call(client, sent)
    assert response.status_code == 401
    text = response.get_json()["issue"][0]["details"]["text"]
    assert text == f"authentication required: the token's aud {aud!r} is not this endpoint's URL {BASE + P!r}"
    assert sent not in response.get_data(as_text=True)


def test_leeway_of_60_seconds(client: FlaskClient) -> None:
    now = int(time.time())
    assert call(client, token(P, exp=now - 30, iat=now - 300)).status_code == 200
    assert call(client, token(P, iat=now + 30)).status_code == 200


def test_allowed_tenant(client: FlaskClient) -> None:
    assert call(client, token(P, iss="https://tenant.example.org", tenant="t-1")).status_code == 200


def test_a_token_is_accepted_once(client: FlaskClient) -> None:
    once = token(P)
    assert call(client, once).status_code == 200
    assert call(client, once).status_code == 401


def test_aud_comes_from_the_public_url_not_the_host_header(client: FlaskClient) -> None:
    spoofed = token(P, aud="http://attacker.example" + P)
    assert client.post(P, json=data.patient_view("p1", data.full_prefetch("p1")), headers={
        **bearer(spoofed), "Host": "attacker.example"}).status_code == 401
    good = token(P, aud=[BASE + P])
    assert client.post(P, json=data.patient_view("p1", data.full_prefetch("p1")), headers={
        **bearer(good), "Host": "attacker.example"}).status_code == 200


def test_jku_is_followed_only_when_it_is_the_issuers_url(client: FlaskClient, jwks_server: JwksServer) -> None:
    elsewhere = JwksServer()
    try:
        elsewhere.jwks = {"keys": [public_jwk(EC_KEY, "rotated")]}
        assert call(client, token(P, kid="rotated", headers={"jku": elsewhere.url})).status_code == 401
        assert elsewhere.hits == 0, "no request toward a URL the token names"
    finally:
        elsewhere.stop()
    assert call(client, token(P, headers={"jku": jwks_server.url})).status_code == 200


def test_unknown_kid_refreshes_the_jwks_at_most_once_a_minute(secured: Flask, jwks_server: JwksServer) -> None:
    client = secured.test_client()
    rotated = ec.generate_private_key(ec.SECP384R1())
    jwks_server.jwks = {"keys": [public_jwk(rotated, "rotated-1")]}
    assert call(client, token(P, key=rotated, kid="rotated-1")).status_code == 200
    assert jwks_server.hits == 1
    for _ in range(20):
        assert call(client, token(P, key=rotated, kid="rotated-2")).status_code == 401
    assert jwks_server.hits == 1, "refreshes are rate-limited"
    assert call(client, token(P, key=rotated, kid="rotated-1")).status_code == 200
    assert call(client, token(P)).status_code == 200, "inline keys survive a refresh"


def test_the_specifications_example_token() -> None:
    """The spec's ES384 token verifies against its JWKS as of its validity, and is refused as expired today."""
    config = IssuerConfig(iss="https://fhir-ehr.example.com/", jwks=SPEC_JWKS,
                          jwks_url="https://fhir-ehr.example.com/jwk_uri")
    auth = Authenticator([config], "https://cds.example.org", MemoryReplayCache())
    try:
        claims = auth.verify(f"Bearer {SPEC_TOKEN}", "/cds-services/some-service", now=1422568800)
        assert claims["jti"] == "ee22b021-e1b7-4611-ba5b-8eec6a33ac1e"
        assert claims["tenant"] == "2ddd6c3a-8e9a-44c6-a305-52111ad302a2"
        with pytest.raises(AuthError, match="jti replayed"):
            auth.verify(f"Bearer {SPEC_TOKEN}", "/cds-services/some-service", now=1422568801)
        with pytest.raises(AuthError, match="expired"):
            Authenticator([config], "https://cds.example.org", MemoryReplayCache()).verify(
                f"Bearer {SPEC_TOKEN}", "/cds-services/some-service")
        with pytest.raises(AuthError, match="Audience"):
            Authenticator([config], "https://cds.example.org", MemoryReplayCache()).verify(
                f"Bearer {SPEC_TOKEN}", "/cds-services/other", now=1422568800)
    finally:
        auth.close()


def test_the_specifications_private_key_signs_tokens_the_service_accepts(tmp_path: Path) -> None:
    path = tmp_path / "issuers.yaml"
    path.write_text(yaml.safe_dump({"issuers": [{"iss": "https://fhir-ehr.example.com/", "jwks": SPEC_JWKS}]}))
    app = create_app(load_settings(database_url=f"sqlite:///{tmp_path / 's.db'}", issuers_file=path,
                                   public_base_url="https://cds.example.org"))
    try:
        key = jwt.PyJWK(SPEC_PRIVATE).key
        signed = jwt.encode({"iss": "https://fhir-ehr.example.com/", "aud": "https://cds.example.org/cds-services",
                             "exp": int(time.time()) + 60, "iat": int(time.time()), "jti": str(uuid.uuid4()),
                             "tenant": "2ddd6c3a-8e9a-44c6-a305-52111ad302a2"}, key, algorithm="ES384",
                            headers={"kid": "example-kid", "typ": "JWT"})
        assert app.test_client().get("/cds-services", headers=bearer(signed)).status_code == 200
    finally:
        app.extensions["pacing_cds"].close()


def test_production_refuses_to_start_open(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PACING_CDS_ENV", "production")
    with pytest.raises(SettingsError, match="PACING_CDS_ISSUERS_FILE"):
        load_settings()
    monkeypatch.setenv("PACING_CDS_AUTH", "disabled")
    monkeypatch.setenv("PACING_CDS_PUBLIC_BASE_URL", BASE)
    assert load_settings().auth == "disabled"


def test_a_broken_issuers_file_stops_the_start(tmp_path: Path) -> None:
    path = tmp_path / "issuers.yaml"
    path.write_text(yaml.safe_dump({"issuers": [{"iss": ISS}]}))
    with pytest.raises(SettingsError, match="needs jwks, jwks_url or both"):
        create_app(load_settings(database_url=f"sqlite:///{tmp_path / 'b.db'}", issuers_file=path))


def raw_token(header: dict[str, Any], payload: dict[str, Any]) -> str:
    """A token written by hand, unsigned: the header and payload any JSON, as an attacker would send them."""
    import base64

    def b64(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{b64(header)}.{b64(payload)}.c2ln"


def claims_now(**change: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"iss": ISS, "aud": BASE + P, "exp": now + 300, "iat": now, "jti": str(uuid.uuid4()), **change}


HEADER = {"alg": "ES384", "typ": "JWT", "kid": "ec-1"}


@pytest.mark.parametrize(("name", "make"), [
    ("alg an array", lambda p: raw_token({**HEADER, "alg": ["ES384"]}, claims_now(aud=BASE + p))),
    ("alg an object", lambda p: raw_token({**HEADER, "alg": {"name": "ES384"}}, claims_now(aud=BASE + p))),
    ("iss an array", lambda p: raw_token(HEADER, claims_now(iss=[ISS], aud=BASE + p))),
    ("iss an object", lambda p: raw_token(HEADER, claims_now(iss={"url": ISS}, aud=BASE + p))),
    ("kid an array", lambda p: raw_token({**HEADER, "kid": ["ec-1"]}, claims_now(aud=BASE + p))),
    ("tenant an array, signed", lambda p: token(p, iss="https://tenant.example.org", tenant=["t-1"])),
    ("exp past any float, signed", lambda p: token(p, exp=10**400)),
    ("iat past any float, signed", lambda p: token(p, iat=-(10**400))),
])
@pytest.mark.parametrize("where", ["/cds-services", P, "/metrics"])
def test_tokens_with_json_arrays_objects_or_huge_numbers_get_401(client: FlaskClient, name: str, make: Any,
                                                                 where: str) -> None:
    """Each token is meant for the endpoint it is sent to: only its odd claim or header refuses it."""
    tok = make(where)
    response = call(client, tok) if where == P else client.get(where, headers=bearer(tok))
    assert response.status_code == 401, (name, response.get_data(as_text=True)[:200])
    assert response.get_json()["issue"][0]["details"]["text"] == "authentication required"


def test_a_browsers_favicon_request_is_a_404_not_a_401(client: FlaskClient) -> None:
    response = client.get("/favicon.ico")
    assert response.status_code == 404
    assert "WWW-Authenticate" not in response.headers
