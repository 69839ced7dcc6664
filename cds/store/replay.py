"""A replay cache in the service's database: every worker and every instance sharing it sees each jti once."""

from __future__ import annotations

import hashlib
import threading

from sqlalchemy import Float, String, delete
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Mapped, mapped_column

from cds.store.database import Base, Store

# Expired entries are deleted in one statement every this many first uses (per process).
SWEEP_EVERY = 500


class UsedToken(Base):
    """A token id seen while its token lives; the key is a digest of issuer and jti."""

    __tablename__ = "used_token"

    token_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[float] = mapped_column(Float, index=True)


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
