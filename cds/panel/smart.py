"""SMART Backend Services: an access token for a FHIR server, asked for by this service itself (no user), with a
client assertion signed by its own private key (RS384 or ES384, its `kid` in the header).

The token endpoint comes from the server's `.well-known/smart-configuration`; the scopes are asked in the form
that document advertises (SMART v2 `system/Patient.rs`, else v1 `system/Patient.read`). A token is kept until a
minute before it expires, and dropped after a 401. No token, key or assertion is ever logged or put in an error.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME_S = 300  # the most the IG allows
RENEW_BEFORE_S = 60  # a token this close to its expiry is renewed before it is used
MAX_DOCUMENT_BYTES = 256 * 1024  # a configuration or token answer is a few hundred bytes


class TokenError(Exception):
    """No access token could be had; the message says why and never carries a secret."""


@dataclass(frozen=True)
class BackendClient:
    """This service as a SMART backend client: its id at the FHIR server and its signing key."""

    client_id: str
    private_key: Any
    key_id: str | None = None

    @property
    def algorithm(self) -> str:
        """RS384 for an RSA key, ES384 for a P-384 key: the two the Backend Services IG requires servers to take."""
        if isinstance(self.private_key, rsa.RSAPrivateKey):
            return "RS384"
        return "ES384"


def load_client(client_id: str, pem: Path, key_id: str | None = None) -> BackendClient:
    """The client from a PEM private key file; TokenError when the file is not an RSA or P-384 EC private key."""
    try:
        key = load_pem_private_key(pem.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise TokenError(f"the private key {pem} cannot be read as an unencrypted PEM key ({type(exc).__name__})"
                         ) from exc
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < 2048:
            raise TokenError(f"the private key {pem} is RSA of {key.key_size} bits: at least 2048 are needed")
    elif not (isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP384R1)):
        raise TokenError(f"the private key {pem} is neither RSA nor EC P-384 (RS384 or ES384)")
    return BackendClient(client_id, key, key_id)


def scopes_for(types: Iterable[str], advertised: Iterable[str]) -> str:
    """Read scopes in the form the server advertises: v2 (`.rs`) when any advertised scope or capability speaks
    v2, else v1 (`.read`); the wildcard `system/*` when the server advertises it (an export's status and files are
    not of one resource type, and servers check them against it), else one scope per resource type read."""
    listed = [str(s) for s in advertised]
    v2 = any(s.endswith((".rs", ".r", ".cruds")) or s == "permission-v2" for s in listed)
    suffix = "rs" if v2 else "read"
    if any(s.startswith("system/*.") for s in listed):
        return f"system/*.{suffix}"
    return " ".join(f"system/{t}.{suffix}" for t in types)


def same_origin(url: str, base: str) -> bool:
    """Whether `url` is on the FHIR server's own origin (scheme, host and port): the only place a token goes."""
    a, b = urlsplit(url), urlsplit(base)
    return (a.scheme, a.hostname, a.port or _default_port(a.scheme)) == \
        (b.scheme, b.hostname, b.port or _default_port(b.scheme))


def _default_port(scheme: str) -> int | None:
    return {"https": 443, "http": 80}.get(scheme)


class TokenSource:
    """Access tokens for one FHIR server, renewed before they expire and after a 401 (`invalidate`)."""

    def __init__(self, http: httpx.Client, base: str, client: BackendClient, types: Iterable[str],
                 clock: Callable[[], float] = time.time) -> None:
        self._http, self.base, self.client = http, base.rstrip("/"), client
        self._types = tuple(types)
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires = 0.0
        self.token_endpoint: str | None = None
        self.scope: str | None = None

    def discover(self) -> None:
        """Read the token endpoint and the advertised scopes from .well-known/smart-configuration."""
        document = self._json("GET", f"{self.base}/.well-known/smart-configuration", "the SMART configuration")
        endpoint = document.get("token_endpoint")
        if not isinstance(endpoint, str) or urlsplit(endpoint).scheme not in ("https", "http"):
            raise TokenError("the SMART configuration names no token_endpoint")
        if urlsplit(endpoint).scheme == "http" and urlsplit(endpoint).hostname not in ("127.0.0.1", "localhost",
                                                                                       "::1"):
            raise TokenError("the token endpoint is not https")
        methods = document.get("token_endpoint_auth_methods_supported")
        if isinstance(methods, list) and "private_key_jwt" not in methods:
            raise TokenError("the server does not take private_key_jwt client authentication")
        advertised = [*(document.get("scopes_supported") or []), *(document.get("capabilities") or [])]
        self.token_endpoint = endpoint
        self.scope = scopes_for(self._types, [s for s in advertised if isinstance(s, str)])

    def token(self) -> str:
        """A token valid for at least RENEW_BEFORE_S more seconds."""
        with self._lock:
            if self._token is None or self._clock() >= self._expires - RENEW_BEFORE_S:
                self._token, self._expires = self._request()
            return self._token

    def invalidate(self) -> None:
        """The server refused the token (401): ask for a new one next time."""
        with self._lock:
            self._token = None

    def assertion(self) -> str:
        """The signed client assertion for one token request."""
        if self.token_endpoint is None:
            raise TokenError("discover() first")
        now = int(self._clock())
        claims = {"iss": self.client.client_id, "sub": self.client.client_id, "aud": self.token_endpoint,
                  "exp": now + ASSERTION_LIFETIME_S, "iat": now, "jti": str(uuid.uuid4())}
        headers = {"typ": "JWT", **({"kid": self.client.key_id} if self.client.key_id else {})}
        return jwt.encode(claims, self.client.private_key, algorithm=self.client.algorithm, headers=headers)

    def _request(self) -> tuple[str, float]:
        if self.token_endpoint is None:
            self.discover()
        assert self.token_endpoint is not None and self.scope is not None
        asked = self._clock()
        answer = self._json("POST", self.token_endpoint, "the token endpoint", data={
            "grant_type": "client_credentials", "scope": self.scope,
            "client_assertion_type": ASSERTION_TYPE, "client_assertion": self.assertion()})
        token, lifetime = answer.get("access_token"), answer.get("expires_in", 300)
        if not isinstance(token, str) or not token:
            raise TokenError("the token endpoint answered without an access_token")
        if isinstance(lifetime, bool) or not isinstance(lifetime, (int, float)) or not 0 < lifetime <= 86400:
            lifetime = 300
        return token, asked + float(lifetime)

    def _json(self, method: str, url: str, what: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = self._http.request(method, url, headers={"Accept": "application/json"}, **kwargs)
        except httpx.HTTPError as exc:
            raise TokenError(f"{what} cannot be reached ({type(exc).__name__})") from exc
        if response.status_code != 200:
            raise TokenError(f"{what} answered {response.status_code}")
        if len(response.content) > MAX_DOCUMENT_BYTES:
            raise TokenError(f"{what} answered more than {MAX_DOCUMENT_BYTES // 1024} KiB")
        try:
            document = response.json()
        except ValueError as exc:
            raise TokenError(f"{what} did not answer JSON") from exc
        if not isinstance(document, dict):
            raise TokenError(f"{what} did not answer a JSON object")
        return document
