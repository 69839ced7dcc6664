"""Replay caches: each CDS client JWT's `jti` is accepted once while the token lives. In this process (one
instance), in Redis (every instance), or in the service's database (every worker and instance sharing it)."""

from __future__ import annotations

import hashlib
import math
import threading
from typing import Protocol

from sqlalchemy import delete
from sqlalchemy.exc import SQLAlchemyError

from cds.store.database import Store, UsedToken

# Expired entries are deleted in one statement every this many first uses (per process).
SWEEP_EVERY = 500


class ReplayCacheUnavailable(Exception):
    """The shared replay cache cannot be reached: no token can be checked for replay (503, not 401)."""


class ReplayCache(Protocol):
    def first_use(self, key: str, expires_at: float, now: float) -> bool:
        """Record key until expires_at; True the first time, False for a replay."""

    def reachable(self) -> bool:
        """Whether first_use can be answered now (readiness)."""


class MemoryReplayCache:
    """In-process replay cache (one instance); expired entries are dropped as new ones arrive."""

    def __init__(self) -> None:
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def first_use(self, key: str, expires_at: float, now: float) -> bool:
        with self._lock:
            if len(self._seen) > 1000:
                self._seen = {k: e for k, e in self._seen.items() if e > now}
            if self._seen.get(key, 0) > now:
                return False
            self._seen[key] = expires_at
            return True

    def reachable(self) -> bool:
        return True


class RedisReplayCache:
    """Replay cache shared by every instance: SET NX with the token's remaining lifetime as expiry."""

    def __init__(self, url: str) -> None:
        import redis

        self._redis = redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
        self._error = redis.RedisError

    def first_use(self, key: str, expires_at: float, now: float) -> bool:
        name = "pacing-cds:jti:" + hashlib.sha256(key.encode()).hexdigest()
        try:
            return bool(self._redis.set(name, b"1", nx=True, ex=max(1, math.ceil(expires_at - now))))
        except self._error as exc:
            raise ReplayCacheUnavailable(type(exc).__name__) from exc

    def reachable(self) -> bool:
        try:
            return bool(self._redis.ping())
        except self._error:
            return False

    def close(self) -> None:
        self._redis.close()


class ReplayCacheError(Exception):
    """The database could not be asked; the caller refuses the call (503), it does not wave it through."""


class DatabaseReplayCache:
    """first_use() as an INSERT that conflicts on a second use; an expired entry is replaced."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._count = 0
        self._lock = threading.Lock()

    def first_use(self, key: str, expires_at: float, now: float) -> bool:
        digest = hashlib.sha256(key.encode()).hexdigest()
        table = UsedToken.__table__
        insert = self._store.insert_statement(table).on_conflict_do_nothing(index_elements=["token_key"])
        try:
            with self._store.engine.begin() as conn:
                conn.execute(delete(UsedToken).where(UsedToken.token_key == digest, UsedToken.expires_at <= now))
                new = conn.execute(insert.returning(table.c.token_key),
                                   {"token_key": digest, "expires_at": expires_at}).first() is not None
                if self._sweep_due():
                    conn.execute(delete(UsedToken).where(UsedToken.expires_at <= now))
        except SQLAlchemyError as exc:
            raise ReplayCacheError(type(exc).__name__) from exc
        return new

    def reachable(self) -> bool:
        """The database is the cache: /healthz asks it already."""
        return True

    def _sweep_due(self) -> bool:
        with self._lock:
            self._count += 1
            return self._count % SWEEP_EVERY == 0
