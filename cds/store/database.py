"""Feedback and audit persistence with SQLAlchemy: an SQLite file by default, PostgreSQL by URL."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple, cast

import orjson
from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    Index,
    Integer,
    String,
    Table,
    Text,
    and_,
    create_engine,
    delete,
    event,
    func,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Dialect, Engine, make_url
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from cds.hooks.models import Feedback
from cds.store.sqlite_audit import Prepared, SqliteCallWriter, make_private, sqlite_file, sqlite_path

_MIGRATION_LOCK = threading.Lock()
PURGE_EVERY_S = 60.0
# pg_advisory_xact_lock(FEEDBACK_LOCK_SPACE, client): one client's feedback transactions one at a time. The two-key
# lock space is apart from the one-key space of the migration lock.
FEEDBACK_LOCK_SPACE = 7207002


class Base(DeclarativeBase):
    pass


class FeedbackItem(Base):
    """One feedback item as the client sent it; `item_key` makes a repeated item a no-op."""

    __tablename__ = "feedback"
    # The rate limit counts a client's recent items; the retention purge deletes by age.
    __table_args__ = (Index("ix_feedback_client_received", "client_key", "received_at"),
                      Index("ix_feedback_received_at", "received_at"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    item_key: Mapped[str] = mapped_column(String(64), unique=True)
    service_id: Mapped[str] = mapped_column(String(64), index=True)
    card_uuid: Mapped[str] = mapped_column(String(256), index=True)
    outcome: Mapped[str] = mapped_column(String(16))
    accepted_suggestions: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    override_system: Mapped[str | None] = mapped_column(String(512), nullable=True)
    override_code: Mapped[str | None] = mapped_column(String(256), nullable=True)
    override_display: Mapped[str | None] = mapped_column(String(512), nullable=True)
    user_comment: Mapped[str | None] = mapped_column(Text, nullable=True)
    outcome_timestamp: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    client_key: Mapped[str | None] = mapped_column(String(64), nullable=True)


class AuditEvent(Base):
    """One service call: who, which patient, what was answered, how long it took. No tokens, no resources."""

    __tablename__ = "audit_event"
    __table_args__ = (Index("ix_audit_event_service_time", "service_id", "time"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    time: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    hook_instance: Mapped[str | None] = mapped_column(String(128), index=True, nullable=True)
    service_id: Mapped[str] = mapped_column(String(64))
    hook: Mapped[str | None] = mapped_column(String(64), nullable=True)
    patient_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    user_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    card_topics: Mapped[list[str]] = mapped_column(JSON)
    rule_set_version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    duration_ms: Mapped[float] = mapped_column(Float)
    status: Mapped[int] = mapped_column(Integer)
    message: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    data_sources: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class IssuedCard(Base):
    """A card this service sent, so that feedback (which names only the card uuid) can be tied to its topic and rule;
    or a silent card (mode "silent"): evaluated, not returned, kept with what it would have said (`card`)."""

    __tablename__ = "issued_card"

    card_uuid: Mapped[str] = mapped_column(String(256), primary_key=True)
    service_id: Mapped[str] = mapped_column(String(64))
    topic: Mapped[str | None] = mapped_column(String(128), nullable=True)
    hook_instance: Mapped[str] = mapped_column(String(128))
    issued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    mode: Mapped[str] = mapped_column(String(8), server_default="shown")
    rule_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    rule_version: Mapped[str | None] = mapped_column(String(32), nullable=True)
    patient_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    card: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class UsedToken(Base):
    """A token id seen while its token lives; the key is a digest of issuer and jti."""

    __tablename__ = "used_token"

    token_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[float] = mapped_column(Float, index=True)


class ChartRecord(Base):
    """The series behind one card's chart and plan: dates and numbers only, reachable by its random token until
    `expires_at`. No name, no identifier, no free text from the record (see cds/charts/series.py)."""

    __tablename__ = "chart"

    token: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    series: Mapped[dict[str, Any]] = mapped_column(JSON)


# Core inserts on the tables (not the ORM classes): the ORM insert path costs more per call than the row itself.
CHART_INSERT = cast(Table, ChartRecord.__table__).insert()
AUDIT_INSERT = cast(Table, AuditEvent.__table__).insert()


SHOWN, SILENT = "shown", "silent"


class CardEntry(NamedTuple):
    """A card of a call as the audit keeps it: returned (shown), or silent with what it would have said."""

    uuid: str
    topic: str | None
    rule_id: str | None = None
    rule_version: str | None = None
    mode: str = SHOWN
    card: dict[str, Any] | None = None  # the card's JSON, kept for a silent card only


@dataclass
class AuditRecord:
    """What the HTTP edge collects during a service call; written once when the call ends."""

    service_id: str
    started: float = field(default_factory=time.perf_counter)
    hook_instance: str | None = None
    hook: str | None = None
    patient_id: str | None = None
    user_id: str | None = None
    cards: list[CardEntry] = field(default_factory=list)  # shown and silent
    rule_set_version: str | None = None
    message: str | None = None
    data_sources: dict[str, Any] | None = None
    charts: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (token, series) behind card links
    charts_expire: datetime | None = None


@dataclass(frozen=True)
class CardGroup:
    """How many cards of one service and topic have this latest outcome and override reason."""

    service: str
    topic: str | None  # None: the card was not issued by this service (or its record was purged)
    outcome: str
    reason_system: str | None
    reason_code: str | None
    cards: int
    events: int  # the feedback events stored for these cards, every outcome sent counted


@dataclass(frozen=True)
class FeedbackReport:
    """Feedback counted by card (each once, by its latest outcome), and how many events were stored."""

    events: int
    groups: list[CardGroup]


@dataclass(frozen=True)
class FeedbackLimit:
    """At most `items` feedback items from one client received within `window`."""

    items: int
    window: timedelta


class FeedbackRateExceeded(Exception):
    """The client's items received within the window, with these, would pass its limit; nothing was stored."""


def feedback_key(service_id: str, item: Feedback) -> str:
    """A digest of the whole item: the same interaction reported twice has the same key."""
    canonical = json.dumps({"service": service_id, **item.to_json()}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Store:
    """The database: one engine per process, created by create_app."""

    def __init__(self, url: str) -> None:
        parsed = make_url(url)
        # orjson writes the JSON columns: several times faster, and dates and datetimes as ISO 8601 natively.
        options: dict[str, Any] = {"pool_pre_ping": True, "json_serializer": _json}
        if parsed.get_backend_name() == "sqlite":
            database = parsed.database
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            path = sqlite_path(parsed)
            if path is not None:
                make_private(path)
            options["connect_args"] = {"timeout": 30, "check_same_thread": False}
        self.engine: Engine = create_engine(url, **options)
        if parsed.get_backend_name() == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._dialect = parsed.get_backend_name()
        self._purged = float("-inf")
        # Built once: SQLAlchemy keys its cache of compiled statements on the statement's structure.
        self._issue_insert = self._insert(IssuedCard.__table__).on_conflict_do_nothing(index_elements=["card_uuid"])
        self._writer = _call_writer(parsed, self.engine.dialect)

    def create_schema(self) -> None:
        """Bring the schema to the newest migration; safe when several processes start at once."""
        for attempt in range(10):
            try:
                self._migrate()
                return
            except (OperationalError, ProgrammingError):
                if attempt == 9:
                    raise
                time.sleep(0.2 * (attempt + 1))

    def _migrate(self) -> None:
        with _MIGRATION_LOCK:  # Alembic's context is process-global: one migration at a time per process
            self._migrate_locked()

    def _migrate_locked(self) -> None:
        from alembic import command
        from alembic.config import Config
        from sqlalchemy import inspect

        config = Config()
        config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
        with self.engine.begin() as conn:
            if self._dialect == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(7207001)"))  # one migrator at a time
            config.attributes["connection"] = conn
            tables = set(inspect(conn).get_table_names())
            if "alembic_version" not in tables and {"feedback", "audit_event", "issued_card"} <= tables:
                command.stamp(config, "0001")  # a database made before migrations existed
            command.upgrade(config, "head")

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self.engine.dispose()

    def insert_statement(self, table: Any) -> Any:
        """INSERT with this backend's ON CONFLICT support."""
        return (postgresql.insert(table) if self._dialect == "postgresql" else sqlite.insert(table))

    _insert = insert_statement

    def purge(self, before: datetime) -> dict[str, int]:
        """Delete feedback, audit events and issued cards older than `before`; how many rows of each."""
        counts = {}
        with self.engine.begin() as conn:
            for name, statement in (
                    ("feedback", delete(FeedbackItem).where(FeedbackItem.received_at < before)),
                    ("audit events", delete(AuditEvent).where(AuditEvent.time < before)),
                    ("issued cards", delete(IssuedCard).where(IssuedCard.issued_at < before)),
                    ("expired token ids", delete(UsedToken).where(UsedToken.expires_at < time.time()))):
                counts[name] = conn.execute(statement).rowcount
        return counts

    # ------------------------------------------------------------ feedback

    def add_feedback(self, service_id: str, items: Iterable[Feedback], client_key: str | None = None,
                     limit: FeedbackLimit | None = None) -> int:
        """Store each item once, in one transaction; return how many were new. With a client and a limit, raise
        FeedbackRateExceeded instead when the client's recent items with these would pass it: counted in the same
        transaction, under a lock per client, so that requests in parallel cannot all pass one count."""
        items = list(items)
        now = _utcnow()
        rows = _feedback_rows(service_id, items, client_key, now)
        # RETURNING tells new rows from conflicts on every backend (rowcount does not under psycopg).
        statement = (self._insert(FeedbackItem.__table__).on_conflict_do_nothing(index_elements=["item_key"])
                     .returning(FeedbackItem.__table__.c.id))
        stored = 0
        sqlite_db = self._dialect == "sqlite"
        rated = client_key if limit is not None else None
        with self.engine.connect() as conn:
            if sqlite_db:
                conn.exec_driver_sql("PRAGMA synchronous=FULL")  # acknowledged feedback survives power loss too
                conn.commit()
            try:
                self._begin_feedback(conn, rated)
                if rated is not None and limit is not None:
                    _check_limit(conn, rated, len(items), limit, now)
                for row in rows:
                    stored += len(conn.execute(statement, row).all())
                conn.commit()
            finally:
                conn.rollback()
                if sqlite_db:
                    conn.exec_driver_sql("PRAGMA synchronous=NORMAL")
                    conn.commit()
        return stored

    def _begin_feedback(self, conn: Any, client_key: str | None) -> None:
        """Take the write lock the count and the insert need before either runs. SQLite: BEGIN IMMEDIATE, the
        database's one write lock (a deferred transaction that read first could not take it later once another
        writer had committed). PostgreSQL: an advisory lock on the client until the transaction ends; its commit is
        visible before the lock passes on, and each statement of READ COMMITTED reads what is committed then."""
        if self._dialect == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        elif self._dialect == "postgresql" and client_key is not None:
            conn.execute(text("SELECT pg_advisory_xact_lock(CAST(:space AS integer), CAST(:client AS integer))"),
                         {"space": FEEDBACK_LOCK_SPACE, "client": _lock_key(client_key)})

    def feedback(self) -> list[dict[str, Any]]:
        """Every stored item, oldest first."""
        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(select(*FeedbackItem.__table__.c)
                                                                .order_by(FeedbackItem.id))]

    def feedback_report(self) -> FeedbackReport:
        """Each card once, by its latest outcome, grouped by service, topic, outcome and override reason."""
        table = FeedbackItem.__table__
        card = (table.c.service_id, table.c.card_uuid)
        # The latest outcome of a card: the newest outcomeTimestamp; of two at the same instant, the later arrival.
        rank = func.row_number().over(partition_by=card, order_by=(table.c.outcome_timestamp.desc(),
                                                                    table.c.id.desc()))
        latest = select(*card, table.c.outcome, table.c.override_system, table.c.override_code,
                        rank.label("rank"), func.count().over(partition_by=card).label("events")).subquery()
        issued = IssuedCard.__table__
        columns = (latest.c.service_id, issued.c.topic, latest.c.outcome, latest.c.override_system,
                   latest.c.override_code)
        # One query, so that the cards and the events they count come from the same snapshot.
        query = (
            select(*columns, func.count(), func.sum(latest.c.events))
            .select_from(latest)
            .outerjoin(issued, and_(issued.c.card_uuid == latest.c.card_uuid,
                                    issued.c.service_id == latest.c.service_id))
            .where(latest.c.rank == 1)
            .group_by(*columns)
        )
        with self.engine.connect() as conn:
            groups = [CardGroup(s, t, o, rs, rc, int(n), int(e)) for s, t, o, rs, rc, n, e in conn.execute(query)]
        return FeedbackReport(events=sum(g.events for g in groups), groups=groups)

    # ------------------------------------------------------------ audit

    def audit(self, record: AuditRecord, status: int) -> None:
        """Write the call's audit event, the cards it issued and their charts, in one transaction."""
        now = _utcnow()
        duration_ms = (time.perf_counter() - record.started) * 1000.0
        event = {
            "time": now,
            "hook_instance": record.hook_instance,
            "service_id": record.service_id,
            "hook": record.hook,
            "patient_id": record.patient_id,
            "user_id": record.user_id,
            "card_topics": [card.topic for card in record.cards if card.topic and card.mode == SHOWN],
            "rule_set_version": record.rule_set_version,
            "duration_ms": round(duration_ms, 3),
            "status": status,
            "message": (record.message or "")[:1024] or None,
            "data_sources": record.data_sources,
        }
        if self._writer is None:
            with self.engine.begin() as conn:
                conn.execute(AUDIT_INSERT, event)
                self._issue(record.service_id, record.hook_instance or "", record.cards, now, conn,
                            record.patient_id)
                if record.charts_expire is not None:
                    self._add_charts(conn, record.charts, now, record.charts_expire)
            return
        charts = [] if record.charts_expire is None else _chart_rows(record.charts, now, record.charts_expire)
        self._writer.write(event, _issued_rows(record.service_id, record.hook_instance or "", record.cards, now,
                                               record.patient_id),
                           charts, now if charts and self._purge_due() else None)

    def _purge_due(self) -> bool:
        """Expired charts go at most once a minute."""
        if time.monotonic() - self._purged > PURGE_EVERY_S:
            self._purged = time.monotonic()
            return True
        return False

    def _issue(self, service_id: str, hook_instance: str, cards: Iterable[tuple[Any, ...]],
               now: datetime, conn: Any, patient_id: str | None = None) -> None:
        rows = _issued_rows(service_id, hook_instance, cards, now, patient_id)
        if not rows:
            return
        statement = self._issue_insert
        if conn is not None:
            conn.execute(statement, rows)
            return
        with self.engine.begin() as own:
            own.execute(statement, rows)

    def record_issued_cards(self, service_id: str, hook_instance: str, cards: Iterable[tuple[Any, ...]],
                            patient_id: str | None = None, at: datetime | None = None) -> None:
        """Remember cards issued outside a service call (imports of history, tests): CardEntry tuples, or
        (uuid, topic) pairs."""
        self._issue(service_id, hook_instance, cards, at or _utcnow(), None, patient_id)

    # ------------------------------------------------------------ charts

    def _add_charts(self, conn: Any, charts: list[tuple[str, dict[str, Any]]], now: datetime,
                    expires: datetime) -> None:
        if not charts:
            return
        rows = _chart_rows(charts, now, expires)
        conn.execute(CHART_INSERT, rows[0] if len(rows) == 1 else rows)  # one row: a plain execute, not executemany
        if self._purge_due():
            conn.execute(delete(ChartRecord).where(ChartRecord.expires_at < now))

    def chart(self, token: str) -> tuple[dict[str, Any], datetime] | None:
        """The series stored for a token and when it expires, or None."""
        query = select(ChartRecord.series, ChartRecord.expires_at).where(ChartRecord.token == token)
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            return None
        expires = row.expires_at if row.expires_at.tzinfo else row.expires_at.replace(tzinfo=UTC)
        return row.series, expires

    def card_accepted(self, card_uuid: str) -> bool:
        """Whether the latest feedback on a card (newest outcomeTimestamp, then the later arrival) accepted it."""
        table = FeedbackItem.__table__
        query = (select(table.c.outcome).where(table.c.card_uuid == card_uuid)
                 .order_by(table.c.outcome_timestamp.desc(), table.c.id.desc()).limit(1))
        with self.engine.connect() as conn:
            return conn.execute(query).scalar() == "accepted"

    def audit_events(self, hook_instance: str | None = None) -> list[dict[str, Any]]:
        query = select(*AuditEvent.__table__.c).order_by(AuditEvent.id)
        if hook_instance is not None:
            query = query.where(AuditEvent.hook_instance == hook_instance)
        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]


def _feedback_rows(service_id: str, items: list[Feedback], client_key: str | None,
                   now: datetime) -> list[dict[str, Any]]:
    """The rows of the distinct items, each with its key."""
    rows = []
    seen = set()
    for item in items:
        key = feedback_key(service_id, item)
        if key in seen:
            continue
        seen.add(key)
        reason = item.overrideReason.reason if item.overrideReason else None
        rows.append({
            "item_key": key,
            "service_id": service_id,
            "card_uuid": item.card,
            "outcome": item.outcome,
            "accepted_suggestions": [s.id for s in item.acceptedSuggestions or []] or None,
            "override_system": reason.system if reason else None,
            "override_code": reason.code if reason else None,
            "override_display": reason.display if reason else None,
            "user_comment": item.overrideReason.userComment if item.overrideReason else None,
            "outcome_timestamp": item.outcomeTimestamp,
            "received_at": now,
            "client_key": client_key,
        })
    return rows


def _check_limit(conn: Any, client_key: str, items: int, limit: FeedbackLimit, now: datetime) -> None:
    """FeedbackRateExceeded when the client's items received within the window, with these, would pass the limit."""
    table = FeedbackItem.__table__
    query = select(func.count()).select_from(table).where(table.c.client_key == client_key,
                                                            table.c.received_at >= now - limit.window)
    if int(conn.execute(query).scalar_one()) + items > limit.items:
        raise FeedbackRateExceeded(f"{limit.items} items within {limit.window}")


def _lock_key(client_key: str) -> int:
    """A signed 32-bit key for the client's advisory lock; two clients that share one merely take turns."""
    return int.from_bytes(hashlib.sha256(client_key.encode()).digest()[:4], "big", signed=True)


def _issued_rows(service_id: str, hook_instance: str, cards: Iterable[tuple[Any, ...]], now: datetime,
                 patient_id: str | None) -> list[dict[str, Any]]:
    entries = (CardEntry(*card) for card in cards)
    return [{"card_uuid": c.uuid, "service_id": service_id, "topic": c.topic, "hook_instance": hook_instance,
             "issued_at": now, "mode": c.mode, "rule_id": c.rule_id, "rule_version": c.rule_version,
             "patient_id": patient_id, "card": c.card} for c in entries if c.uuid]


def _chart_rows(charts: list[tuple[str, dict[str, Any]]], now: datetime, expires: datetime) -> list[dict[str, Any]]:
    return [{"token": token, "created_at": now, "expires_at": expires, "series": series} for token, series in charts]


def _call_writer(url: URL, dialect: Dialect) -> SqliteCallWriter | None:
    """The prepared inserts of a service call's transaction, on an SQLite file (see cds/store/sqlite_audit.py)."""
    path = sqlite_file(url)
    if path is None:
        return None
    audit_table = cast(Table, AuditEvent.__table__)
    chart_table = cast(Table, ChartRecord.__table__)
    event_columns = [c.name for c in audit_table.columns if c.name != "id"]
    expires = chart_table.c.expires_at
    quote = dialect.identifier_preparer.quote
    return SqliteCallWriter(
        path, _sqlite_pragmas, Prepared(audit_table, event_columns, dialect),
        Prepared(cast(Table, IssuedCard.__table__), ["card_uuid", "service_id", "topic", "hook_instance", "issued_at",
                                                     "mode", "rule_id", "rule_version", "patient_id", "card"],
                 dialect, f" ON CONFLICT ({quote('card_uuid')}) DO NOTHING"),
        Prepared(chart_table, ["token", "created_at", "expires_at", "series"], dialect),
        f"DELETE FROM {quote(chart_table.name)} WHERE {quote(expires.name)} < ?",
        expires.type.dialect_impl(dialect).bind_processor(dialect))


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # NORMAL in WAL mode: a commit survives the process being killed; an fsync per audit record would
    # dominate the request. Feedback transactions switch to FULL (see Store.add_feedback).
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
