"""The replay cache scales out: a token used on one instance is refused by another sharing Redis."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import jwt
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import ec

from cds.auth.replay import RedisReplayCache, ReplayCacheUnavailable
from tests.conftest import LiveService
from tests.support.backing import RedisServer
from tests.support.processes import free_port

KEY = ec.generate_private_key(ec.SECP384R1())
BASE = "https://cds.example.org"


def signed(path: str) -> dict[str, str]:
    claims = {"iss": "https://ehr.example.org", "aud": BASE + path, "exp": int(time.time()) + 60,
              "iat": int(time.time()), "jti": str(uuid.uuid4())}
    return {"Authorization": "Bearer " + jwt.encode(claims, KEY, algorithm="ES384", headers={"kid": "k1", "typ": "JWT"})}


def test_redis_cache_refuses_the_second_use_and_forgets_after_expiry(redis_server: RedisServer) -> None:
    cache = RedisReplayCache(redis_server.url)
    now = time.time()
    key = f"iss\n{uuid.uuid4()}"
    assert cache.first_use(key, now + 1, now) is True
    assert cache.first_use(key, now + 1, now) is False
    time.sleep(2.1)
    assert cache.first_use(key, time.time() + 1, time.time()) is True
    cache.close()


def test_unreachable_redis_is_an_error_not_a_pass() -> None:
    cache = RedisReplayCache(f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(ReplayCacheUnavailable):
        cache.first_use("k", time.time() + 60, time.time())


def test_token_replayed_against_a_second_instance_is_refused(live_service: Callable[..., LiveService],
                                                            redis_server: RedisServer, tmp_path: Path,
                                                            http: httpx.Client) -> None:
    jwk = {**json.loads(jwt.algorithms.ECAlgorithm.to_jwk(KEY.public_key())), "kid": "k1"}
    issuers = tmp_path / "issuers.yaml"
    issuers.write_text(yaml.safe_dump({"issuers": [{"iss": "https://ehr.example.org", "jwks": {"keys": [jwk]}}]}))
    settings = {"issuers_file": str(issuers), "public_base_url": BASE, "redis_url": redis_server.url}
    first, second = live_service(**settings), live_service(**settings)
    headers = signed("/cds-services")
    assert http.get(f"{first.url}/cds-services", headers=headers).status_code == 200
    assert http.get(f"{second.url}/cds-services", headers=headers).status_code == 401
    fresh = signed("/cds-services")
    assert http.get(f"{second.url}/cds-services", headers=fresh).status_code == 200
    with httpx.Client(timeout=10) as other_connection:  # another worker of the same instance, maybe
        assert other_connection.get(f"{first.url}/cds-services", headers=fresh).status_code == 401
