"""CDS client authentication (CDS Hooks 2.0, Trusting CDS Clients): signed JWTs from allow-listed issuers.

- issuers, their keys (inline `jwks` and/or a `jwks_url`) and allowed tenants come from PACING_CDS_ISSUERS_FILE;
- asymmetric algorithms only; `typ` JWT; `kid` required; a `jku` header is accepted only when it is the
  issuer's own allow-listed `jwks_url` (no request is ever made to a URL a token names);
- `aud` is the exact public URL called (PUBLIC_BASE_URL + path, never the Host header);
- `exp` and `iat` required, `nbf` honoured, 60 s leeway; a token may live at most MAX_LIFETIME_S;
- `jti` is never accepted twice while the token lives (the replay cache);
- unknown `kid`: the issuer's JWK Set is fetched again, at most once per REFRESH_INTERVAL_S, by one thread while
  the others answer at once, within JWKS_DEADLINE_S and JWKS_MAX_BYTES (forged kids cannot hold clients up);
- `fhir_servers`: the FHIR servers this issuer's calls may name as fhirServer (see cds.fhir.allowlist).
Every failure is the same 401 to the client; the reason goes to the log with iss and jti, never the token.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import jwt
import yaml
from jwt import PyJWK
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cds.auth.replay import ReplayCache
from cds.fhir.allowlist import AllowList, NotAllowed, parse_target
from cds.knowledge.loader import read_yaml

log = logging.getLogger("cds.auth")

ALGORITHMS = {"ES256": "EC", "ES384": "EC", "ES512": "EC", "RS256": "RSA", "RS384": "RSA", "RS512": "RSA",
              "PS256": "RSA", "PS384": "RSA", "PS512": "RSA"}
LEEWAY_S = 60
MAX_LIFETIME_S = 3600
MAX_TIME = 2**53  # seconds: past any date, and still exact as a float (no overflow in the arithmetic below)
REFRESH_INTERVAL_S = 60.0
JWKS_DEADLINE_S = 3.0
JWKS_MAX_BYTES = 256 * 1024


class AuthError(Exception):
    """Why a token was refused; logged. `public`: what the client is told besides "authentication required", for
    a refusal an integrator must be able to see (the audience), never the token or a key."""

    def __init__(self, message: str, public: str | None = None) -> None:
        super().__init__(message)
        self.public = public


class IssuerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    iss: str = Field(min_length=1)
    jwks: dict[str, Any] | None = None
    jwks_url: str | None = None
    tenants: list[str] | None = None
    fhir_servers: list[str] | None = None

    @field_validator("jwks_url")
    @classmethod
    def _https_or_loopback(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            target = parse_target(value)
        except NotAllowed as exc:
            raise ValueError(f"must be an https URL ({exc})") from exc
        loopback = target.host in ("127.0.0.1", "::1", "localhost")
        if target.scheme != "https" and not loopback:
            raise ValueError("must be an https URL")
        return value

    @field_validator("fhir_servers")
    @classmethod
    def _usable_servers(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            AllowList.parse(value)
        return value

    @model_validator(mode="after")
    def _has_keys(self) -> IssuerConfig:
        if self.jwks is None and self.jwks_url is None:
            raise ValueError("an issuer needs jwks, jwks_url or both")
        if self.jwks is not None and not isinstance(self.jwks.get("keys"), list):
            raise ValueError("jwks must be a JWK Set: {keys: [...]}")
        return self


class IssuersFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    issuers: list[IssuerConfig] = Field(min_length=1)


def load_issuers(path: Path) -> list[IssuerConfig]:
    try:
        raw = read_yaml(path.read_text(encoding="utf-8"))
        return IssuersFile.model_validate(raw).issuers
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: cannot be read ({exc})") from exc
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_url=False))
        raise ValueError(f"{path}: {problems}") from exc


class Issuer:
    """One trusted issuer and its keys, refreshed from its jwks_url when a token names an unknown kid."""

    def __init__(self, config: IssuerConfig, http: httpx.Client) -> None:
        self.config = config
        self._http = http
        self._lock = threading.Lock()
        self._keys: dict[str, PyJWK] = {}
        self._last_fetch = -REFRESH_INTERVAL_S
        if config.jwks is not None:
            self._keys.update(_parse_jwks(config.jwks))

    def key(self, kid: str, now: float) -> PyJWK:
        keys = self._keys
        if kid not in keys and self.config.jwks_url and now - self._last_fetch >= REFRESH_INTERVAL_S \
                and self._lock.acquire(blocking=False):
            # One refresh at a time; the other requests do not queue behind it.
            try:
                self._last_fetch = now
                self._refresh()
            finally:
                self._lock.release()
            keys = self._keys
        if kid not in keys:
            raise AuthError(f"unknown kid {kid[:64]!r}")
        return keys[kid]

    def _refresh(self) -> None:
        assert self.config.jwks_url is not None
        try:
            fetched = _parse_jwks(json.loads(self._download(self.config.jwks_url)))
        except (httpx.HTTPError, ValueError, RecursionError) as exc:
            log.warning("JWK Set of %s not refreshed: %s", self.config.iss, type(exc).__name__)
            return
        inline = _parse_jwks(self.config.jwks) if self.config.jwks else {}
        self._keys = {**fetched, **inline}

    def _download(self, url: str) -> bytes:
        """The JWK Set document, within JWKS_DEADLINE_S in all and JWKS_MAX_BYTES; ValueError otherwise."""
        deadline = time.monotonic() + JWKS_DEADLINE_S
        chunks, size = [], 0
        with self._http.stream("GET", url, timeout=JWKS_DEADLINE_S) as response:
            response.raise_for_status()
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > JWKS_MAX_BYTES:
                    raise ValueError("JWK Set too large")
                if time.monotonic() > deadline:
                    raise ValueError("JWK Set not received in time")
                chunks.append(chunk)
        return b"".join(chunks)


def _parse_jwks(jwks: Any) -> dict[str, PyJWK]:
    keys: dict[str, PyJWK] = {}
    for entry in jwks.get("keys", []) if isinstance(jwks, dict) else []:
        if not isinstance(entry, dict) or "kid" not in entry or entry.get("kty") not in ("EC", "RSA"):
            continue
        try:
            keys[str(entry["kid"])] = PyJWK(entry)
        except (jwt.PyJWTError, ValueError, TypeError):
            log.warning("JWK %r skipped: not a usable public key", str(entry.get("kid"))[:64])
    return keys


class Authenticator:
    """Verifies the CDS Client JWT of each request."""

    def __init__(self, issuers: list[IssuerConfig], base_url: str, replay: ReplayCache,
                 http: httpx.Client | None = None) -> None:
        self._http = http or httpx.Client(timeout=JWKS_DEADLINE_S, follow_redirects=False, trust_env=False,
                                          headers={"Accept-Encoding": "identity"})
        self.issuers = {config.iss: Issuer(config, self._http) for config in issuers}
        self.base_url = base_url.rstrip("/")
        self.replay = replay

    def fhir_server_lists(self) -> dict[str, AllowList]:
        """The allow-list of each issuer that has its own `fhir_servers`."""
        return {iss: AllowList.parse(issuer.config.fhir_servers) for iss, issuer in self.issuers.items()
                if issuer.config.fhir_servers is not None}

    def close(self) -> None:
        self._http.close()
        close = getattr(self.replay, "close", None)
        if close is not None:
            close()

    def verify(self, authorization: str | None, path: str, now: float | None = None) -> dict[str, Any]:
        """The verified claims, or AuthError naming why not."""
        now = time.time() if now is None else now
        if not authorization or not authorization.startswith("Bearer "):
            raise AuthError("no Bearer token")
        token = authorization.removeprefix("Bearer ").strip()
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise AuthError(f"malformed token ({type(exc).__name__})") from exc
        alg, kid, iss = header.get("alg"), header.get("kid"), unverified.get("iss")
        if not isinstance(alg, str) or alg not in ALGORITHMS:  # a JSON array or object is no algorithm name
            raise AuthError(f"algorithm {str(alg)[:16]!r} refused")
        if header.get("typ") != "JWT":
            raise AuthError("typ is not JWT")
        if not isinstance(kid, str) or not kid:
            raise AuthError("no kid")
        issuer = self.issuers.get(iss) if isinstance(iss, str) else None
        if issuer is None:
            raise AuthError(f"issuer {str(iss)[:128]!r} not trusted")
        jku = header.get("jku")
        if jku is not None and jku != issuer.config.jwks_url:
            raise AuthError("jku is not the issuer's allow-listed JWK Set URL")
        key = issuer.key(kid, now)
        if ALGORITHMS[alg] != key.key_type:
            raise AuthError(f"{alg} does not fit a {key.key_type} key")
        audience = self.base_url + path
        try:
            claims = jwt.decode(token, key=key.key, algorithms=[alg], audience=audience, issuer=issuer.config.iss,
                                options={"require": ["iss", "aud", "exp", "iat", "jti"], "verify_exp": False,
                                         "verify_iat": False, "verify_nbf": False})
        except jwt.InvalidAudienceError as exc:  # raised after the signature checked out: the aud is the sender's
            received = jwt.decode(token, options={"verify_signature": False}).get("aud")
            said = f"the token's aud {str(received)[:200]!r} is not this endpoint's URL {audience!r}"
            raise AuthError(f"InvalidAudienceError: {said}", public=said) from exc
        except jwt.PyJWTError as exc:
            raise AuthError(f"{type(exc).__name__}: {exc}"[:200]) from exc
        self._check_times(claims, now)
        tenants = issuer.config.tenants
        if tenants is not None and (not isinstance(claims.get("tenant"), str) or claims["tenant"] not in tenants):
            raise AuthError("tenant not allowed")
        if not isinstance(claims["jti"], str) or not claims["jti"]:
            raise AuthError("jti is not a string")
        if not self.replay.first_use(f"{issuer.config.iss}\n{claims['jti']}", float(claims["exp"]) + LEEWAY_S, now):
            raise AuthError("jti replayed")
        return claims

    @staticmethod
    def _check_times(claims: dict[str, Any], now: float) -> None:
        for name in ("exp", "iat", "nbf"):
            if name in claims and (isinstance(claims[name], bool) or not isinstance(claims[name], (int, float))
                                   or not -MAX_TIME <= claims[name] <= MAX_TIME):
                raise AuthError(f"{name} is not a time in range")
        if claims["exp"] < now - LEEWAY_S:
            raise AuthError("expired")
        if claims["iat"] > now + LEEWAY_S:
            raise AuthError("issued in the future")
        if "nbf" in claims and claims["nbf"] > now + LEEWAY_S:
            raise AuthError("not yet valid")
        if claims["exp"] - max(claims["iat"], now - LEEWAY_S) > MAX_LIFETIME_S:
            raise AuthError(f"lifetime over {MAX_LIFETIME_S} s")
