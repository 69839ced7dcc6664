"""Token replay across workers without Redis, JWK Set refresh that forged kids cannot turn against clients, and
production settings that refuse unsafe exposure."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import jwt
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import ec

from cds.auth.tokens import AuthError, Issuer, IssuerConfig
from cds.settings import SettingsError, load_settings
from tests.conftest import LiveService
from tests.support.backing import RedisServer
from tests.support.processes import free_port

Start = Callable[..., LiveService]
KEY = ec.generate_private_key(ec.SECP256R1())
ISS = "https://ehr.example.org"
BASE = "https://cds.example.org"


def token(path: str, kid: str = "k1", jti: str | None = None) -> str:
    claims = {"iss": ISS, "aud": BASE + path, "exp": int(time.time()) + 120, "iat": int(time.time()),
              "jti": jti or str(uuid.uuid4())}
    return jwt.encode(claims, KEY, algorithm="ES256", headers={"kid": kid, "typ": "JWT"})


def issuers_file(tmp_path: Path, **extra: object) -> Path:
    jwk = {**json.loads(jwt.algorithms.ECAlgorithm.to_jwk(KEY.public_key())), "kid": "k1"}
    path = tmp_path / "issuers.yaml"
    path.write_text(yaml.safe_dump({"issuers": [{"iss": ISS, "jwks": {"keys": [jwk]}, **extra}]}))
    return path


def test_a_token_is_accepted_once_across_workers_without_redis(live_service: Start, tmp_path: Path) -> None:
    service = live_service(workers="2", issuers_file=str(issuers_file(tmp_path)), public_base_url=BASE)
    captured = {"Authorization": "Bearer " + token("/cds-services")}
    statuses = []
    for _ in range(20):
        with httpx.Client(timeout=10) as fresh:  # a new connection each time: any worker may take it
            statuses.append(fresh.get(service.url + "/cds-services", headers=captured).status_code)
    assert statuses.count(200) == 1 and statuses.count(401) == 19, statuses


def test_forged_kids_do_not_hold_up_valid_tokens(live_service: Start, tmp_path: Path,
                                                 fault_server: Callable[[str], str]) -> None:
    jwks_url = fault_server("jwks-drip").removesuffix("/fhir") + "/jwks.json"
    service = live_service(workers="1", issuers_file=str(issuers_file(tmp_path, jwks_url=jwks_url)),
                           public_base_url=BASE)
    with ThreadPoolExecutor(12) as pool, httpx.Client(timeout=30) as forged_client:
        forged = [pool.submit(forged_client.get, service.url + "/cds-services",
                              headers={"Authorization": "Bearer " + token("/cds-services", kid=f"forged-{i}")})
                  for i in range(12)]
        time.sleep(0.5)  # the first forged kid is now refreshing the JWK Set from the dripping URL
        with httpx.Client(timeout=httpx.Timeout(5.0)) as honest:
            answer = honest.get(service.url + "/cds-services",
                                headers={"Authorization": "Bearer " + token("/cds-services")})
        assert answer.status_code == 200, "a known key is not queued behind a refresh"
        assert all(f.result().status_code == 401 for f in forged)


def test_a_huge_jwk_set_is_not_read_past_its_cap(fault_server: Callable[[str], str]) -> None:
    url = fault_server("jwks-huge").removesuffix("/fhir") + "/jwks.json"
    with httpx.Client(timeout=5, follow_redirects=False, trust_env=False) as http:
        issuer = Issuer(IssuerConfig(iss=ISS, jwks_url=url), http)
        with pytest.raises(AuthError, match="unknown kid"):
            issuer.key("k1", time.time())


@pytest.mark.parametrize("url", ["http://127.0.0.1.nip.io/jwks", "http://localhost@evil.example/jwks",
                                 "http://localhost.evil.example/jwks", "http://evil.example/jwks"])
def test_the_jwks_url_loopback_exception_is_parsed_not_prefix_matched(url: str) -> None:
    with pytest.raises(ValueError, match="https"):
        IssuerConfig(iss=ISS, jwks_url=url)


@pytest.mark.parametrize(("setting", "value", "named"), [
    ("host", "0.0.0.0", "PACING_CDS_ALLOW_ALL_INTERFACES"),
    ("host", "::", "PACING_CDS_ALLOW_ALL_INTERFACES"),
    ("public_base_url", "http://cds.example.org", "PACING_CDS_PUBLIC_BASE_URL"),
    ("cors_origins", "*", "PACING_CDS_CORS_ORIGINS"),
])
def test_production_refuses_unsafe_exposure(setting: str, value: str, named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        load_settings(**{**PRODUCTION, setting: value})
    load_settings(env="development", **{setting: value})  # allowed while developing


# A production configuration that starts: open by choice, and reached by the EHR over https.
PRODUCTION = {"env": "production", "auth": "disabled", "public_base_url": BASE}


def test_production_binds_every_interface_only_when_told(tmp_path: Path) -> None:
    settings = load_settings(**PRODUCTION, host="0.0.0.0", allow_all_interfaces=True)
    assert settings.host == "0.0.0.0"
    assert load_settings(**PRODUCTION).origins == (), "no CORS origin unless listed"


def test_production_needs_the_public_https_url_card_links_are_made_from() -> None:
    with pytest.raises(SettingsError, match="PACING_CDS_PUBLIC_BASE_URL must be set"):
        load_settings(env="production", auth="disabled")
    assert load_settings(**PRODUCTION).base_url == BASE


@pytest.mark.parametrize(("url", "accepted"), [
    ("redis://redis.internal:6379/0", False),
    ("redis://pacing@redis.internal:6379/0", False),
    ("redis://:s3cret@redis.internal:6379/0", True),
    ("redis://pacing:s3cret@redis.internal:6379/0", True),
    ("rediss://redis.internal:6380/0", True),
])
def test_production_redis_is_encrypted_or_authenticated(url: str, accepted: bool) -> None:
    if accepted:
        assert load_settings(**PRODUCTION, redis_url=url).redis_url == url
    else:
        with pytest.raises(SettingsError, match="PACING_CDS_REDIS_URL must use rediss://"):
            load_settings(**PRODUCTION, redis_url=url)
    load_settings(env="development", redis_url=url)  # a local Redis while developing


def test_readiness_reports_an_unreachable_replay_cache(tmp_path: Path, redis_server: RedisServer) -> None:
    """With Redis down every authenticated call would be 503: so is /healthz, and it says why."""
    from cds import create_app

    for url, status in ((f"redis://127.0.0.1:{free_port()}/0", 503), (redis_server.url, 200)):
        app = create_app(load_settings(database_url=f"sqlite:///{tmp_path / 'r.db'}", redis_url=url,
                                       issuers_file=issuers_file(tmp_path), public_base_url=BASE))
        try:
            response = app.test_client().get("/healthz")
            assert app.test_client().get("/livez").status_code == 200  # alive all the same: no restart loop
        finally:
            app.extensions["pacing_cds"].close()
        assert response.status_code == status, url
        if status == 503:
            assert "replay cache unreachable" in response.get_json()["issue"][0]["details"]["text"]
