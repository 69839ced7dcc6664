"""A service call's audit transaction on an SQLite file goes through prepared sqlite3 inserts: what it writes must
read back exactly as what SQLAlchemy writes, all or nothing, from many threads at once. (Surviving kill -9 is in
test_durability.py, through a live service.)"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from cds.store import database
from cds.store.database import SILENT, AuditRecord, CardEntry, IssuedCard, Store
from cds.store.sqlite_audit import sqlite_file

NOW = datetime(2026, 11, 20, 9, 30, 15, 123456, tzinfo=UTC)


def a_call(n: int, token: str | None = None) -> AuditRecord:
    record = AuditRecord(service_id="pacing-review", hook_instance=f"call-{n}", hook="patient-view",
                         patient_id="p-1", user_id="Practitioner/7", rule_set_version="2.0.0+abc",
                         message="naïve — “quoted” text" if n % 2 else None,
                         data_sources={"pain": "prefetch", "goals": "unobtainable (optional)"} if n % 3 else None,
                         cards=[CardEntry(f"uuid-{n}-a", "progress", "progress", "0.2.0"), CardEntry(f"uuid-{n}-b", None),
                                CardEntry("", "data-unavailable"),
                                CardEntry(f"uuid-{n}-c", "hold", "hold", "0.1.0", SILENT, {"summary": "Hold — “x”"})])
    record.charts = [(token or f"token-{n}", {"days": ["2026-11-19", "2026-11-20"], "values": [20, 22.5],
                                             "plan": None})]
    record.charts_expire = NOW + timedelta(hours=24)
    return record


def store(tmp_path: Path, name: str, prepared: bool = True) -> Store:
    made = Store(f"sqlite:///{tmp_path / name}")
    made.create_schema()
    if not prepared:
        made._writer = None
    return made


def written(made: Store) -> dict[str, Any]:
    events = [{k: v for k, v in e.items() if k not in ("id", "duration_ms")} for e in made.audit_events()]
    with made.engine.connect() as conn:
        cards = [dict(row._mapping) for row in conn.execute(select(*IssuedCard.__table__.c)
                                                                .order_by(IssuedCard.card_uuid))]
    charts = {token: made.chart(token) for event in events for token in (f"token-{event['hook_instance'][5:]}",)}
    return {"events": events, "cards": cards, "charts": charts}


def stored(path: Path) -> list[list[tuple[Any, ...]]]:
    """Every row as SQLite holds it (the text and its SQL type), but the audit event's id and duration."""
    with sqlite3.connect(path) as db:
        return [db.execute(f"SELECT {columns} FROM {table} ORDER BY 1").fetchall() for table, columns in (
            ("audit_event", "time, hook_instance, service_id, hook, patient_id, user_id, card_topics, "
                            "rule_set_version, status, message, data_sources, typeof(data_sources)"),
            ("issued_card", "*"), ("chart", "*"))]


def test_a_call_reads_back_as_sqlalchemy_writes_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(database, "_utcnow", lambda: NOW)
    fast, slow = store(tmp_path, "fast.db"), store(tmp_path, "slow.db", prepared=False)
    try:
        assert fast._writer is not None  # the comparison would be empty if both took the same path
        for n in (1, 2, 3):
            fast.audit(a_call(n), 200)
            slow.audit(a_call(n), 200)
        fast_rows, slow_rows = written(fast), written(slow)
        assert fast_rows == slow_rows
        assert stored(tmp_path / "fast.db") == stored(tmp_path / "slow.db")  # the same text in the file, too
        assert fast_rows["events"][0]["card_topics"] == ["progress", "data-unavailable"]
        assert fast_rows["charts"]["token-1"] == ({"days": ["2026-11-19", "2026-11-20"], "values": [20, 22.5],
                                                    "plan": None}, NOW + timedelta(hours=24))
    finally:
        fast.close()
        slow.close()


def test_a_call_that_cannot_be_written_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(database, "_utcnow", lambda: NOW)  # the charts have not expired
    made = store(tmp_path, "audit.db")
    try:
        made.audit(a_call(1), 200)
        with pytest.raises(SQLAlchemyError):
            made.audit(a_call(2, token="token-1"), 200)  # the chart's token is taken: the whole call rolls back
        made.audit(a_call(3), 200)  # and the connection is usable again
        rows = written(made)
        assert [e["hook_instance"] for e in rows["events"]] == ["call-1", "call-3"]
        assert [c["card_uuid"] for c in rows["cards"]] == ["uuid-1-a", "uuid-1-b", "uuid-1-c", "uuid-3-a", "uuid-3-b",
                                                           "uuid-3-c"]
    finally:
        made.close()


def test_threads_writing_at_once_lose_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(database, "_utcnow", lambda: NOW)
    made = store(tmp_path, "audit.db")
    threads, calls = 8, 40
    errors: list[BaseException] = []

    def client(t: int) -> None:
        try:
            for i in range(calls):
                made.audit(a_call(t * 1000 + i), 200)
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=client, args=(t,)) for t in range(threads)]
    try:
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        assert errors == []
        instances = [e["hook_instance"] for e in made.audit_events()]
        assert sorted(instances) == sorted(f"call-{t * 1000 + i}" for t in range(threads) for i in range(calls))
    finally:
        made.close()


@pytest.mark.parametrize(("url", "path"), [
    ("sqlite:///var/pacing-cds.db", "var/pacing-cds.db"),
    ("sqlite:////srv/cds/audit.db", "/srv/cds/audit.db"),
    ("sqlite://", None),
    ("sqlite:///:memory:", None),
    ("sqlite:///file:audit?mode=memory&cache=shared&uri=true", None),
    ("postgresql+psycopg://cds@127.0.0.1/cds", None),
])
def test_only_a_plain_sqlite_file_takes_the_prepared_path(url: str, path: str | None) -> None:
    assert sqlite_file(make_url(url)) == path


def test_expired_charts_are_deleted_with_a_later_call(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(database, "_utcnow", lambda: NOW)
    made = store(tmp_path, "audit.db")
    try:
        made._purged = float("-inf")  # the purge is due
        expired = a_call(1)
        expired.charts_expire = NOW - timedelta(minutes=1)
        made.audit(expired, 200)
        assert made.chart("token-1") is None
        made._purged = float("-inf")
        made.audit(a_call(2), 200)
        assert made.chart("token-2") is not None
        assert [e["hook_instance"] for e in made.audit_events()] == ["call-1", "call-2"]
    finally:
        made.close()


def test_a_writer_waits_its_turn_behind_another_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Writers of every process take turns on the lock file beside the database, so that a waiting writer is woken
    when the one before it is done, not by SQLite's sleeping retries: while another holder keeps the turn (here a
    descriptor of the test's own, as another process would hold it), a call's rows are not written; once it lets
    go, they are."""
    monkeypatch.setattr(database, "_utcnow", lambda: NOW)
    made = store(tmp_path, "audit.db")
    holder = os.open(tmp_path / "audit.db-writer.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(holder, fcntl.LOCK_EX)
    writer = threading.Thread(target=made.audit, args=(a_call(1), 200))
    try:
        writer.start()
        writer.join(timeout=1.0)
        assert writer.is_alive()  # waiting for its turn
        assert made.audit_events() == []
        fcntl.flock(holder, fcntl.LOCK_UN)
        writer.join(timeout=30)
        assert not writer.is_alive()
        assert [e["hook_instance"] for e in made.audit_events()] == ["call-1"]
    finally:
        fcntl.flock(holder, fcntl.LOCK_UN)
        os.close(holder)
        writer.join(timeout=30)
        made.close()


def test_without_a_lock_file_the_writers_still_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the lock file cannot be opened (here a folder has its name), SQLite's own lock orders the writers."""
    monkeypatch.setattr(database, "_utcnow", lambda: NOW)
    made = store(tmp_path, "audit.db")
    (tmp_path / "audit.db-writer.lock").mkdir()
    try:
        for n in (1, 2):
            made.audit(a_call(n), 200)
        assert [e["hook_instance"] for e in made.audit_events()] == ["call-1", "call-2"]
    finally:
        made.close()
