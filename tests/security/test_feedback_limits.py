"""Feedback cannot fill the database: field sizes as the specification shapes them, a cap on items per request,
a rate limit per client, and a retention purge; on SQLite and on PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from flask import Flask
from sqlalchemy import update

from cds import create_app
from cds.hooks.models import Feedback
from cds.settings import load_settings
from cds.store.database import AuditEvent, FeedbackItem, FeedbackLimit, FeedbackRateExceeded, IssuedCard, Store
from tests.conftest import LiveService
from tests.support import data
from tests.support.backing import PostgresServer

FEEDBACK = "/cds-services/pacing-review/feedback"
SENDERS, ITEMS_EACH, RATE = 24, 20, 120  # 480 items sent at once against 120 a minute


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'feedback.db'}"
    else:
        server: PostgresServer = request.getfixturevalue("postgres_server")
        yield server.database(f"cds_{uuid.uuid4().hex[:8]}")


@pytest.fixture
def app(database_url: str) -> Iterator[Flask]:
    application = create_app(load_settings(database_url=database_url, feedback_rate_per_minute=30,
                                           feedback_max_items=10))
    yield application
    application.extensions["pacing_cds"].close()


def item(card: str, **changes: Any) -> dict[str, Any]:
    return {"card": card, "outcome": "overridden", "outcomeTimestamp": "2026-11-20T10:00:00Z",
            "overrideReason": {"reason": {"code": "clinical-judgement", "system": "https://example.org/r"}},
            **changes}


def test_oversized_fields_are_refused_before_anything_is_stored(app: Flask) -> None:
    client = app.test_client()
    big = "x" * (5 * 1024 * 1024 - 200)
    for body in ({"feedback": [item(big)]},
                 {"feedback": [item("c1", overrideReason={"reason": {"code": big[:300], "system": "s"}})]},
                 {"feedback": [item("c1", overrideReason={"reason": {"code": "c", "system": "s",
                                                                     "display": big[:600]}})]},
                 {"feedback": [item("c1", outcome="accepted", overrideReason=None,
                                    acceptedSuggestions=[{"id": str(i)} for i in range(65)])]}):
        response = client.post(FEEDBACK, json=body)
        assert response.status_code in (400, 413), response.get_data(as_text=True)[:300]
    assert app.extensions["pacing_cds"].store.feedback() == []


def test_more_items_than_the_cap_is_400(app: Flask) -> None:
    response = app.test_client().post(FEEDBACK, json={"feedback": [item(f"c{i}") for i in range(11)]})
    assert response.status_code == 400 and "at most 10 items" in response.get_data(as_text=True)


def test_a_client_past_its_rate_is_429_until_the_minute_has_passed(app: Flask) -> None:
    client = app.test_client()
    for batch in range(3):
        response = client.post(FEEDBACK, json={"feedback": [item(f"r{batch}-{i}") for i in range(10)]})
        assert response.status_code == 200
    refused = client.post(FEEDBACK, json={"feedback": [item("r-over")]})
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "60"
    assert refused.get_json()["issue"][0]["code"] == "throttled"
    other = app.test_client()
    other_response = other.post(FEEDBACK, json={"feedback": [item("o1")]}, environ_base={"REMOTE_ADDR": "10.0.0.9"})
    assert other_response.status_code == 200, "another client has its own allowance"
    store = app.extensions["pacing_cds"].store
    with store.engine.begin() as conn:  # a minute later
        conn.execute(update(FeedbackItem).values(received_at=datetime.now(UTC) - timedelta(minutes=2)))
    assert client.post(FEEDBACK, json={"feedback": [item("r-later")]}).status_code == 200


@pytest.mark.slow  # runs a command
def test_purge_deletes_what_is_past_retention_and_keeps_the_rest(database_url: str, tmp_path: Path) -> None:
    app = create_app(load_settings(database_url=database_url))
    client = app.test_client()
    for card in ("old-1", "old-2", "new-1"):
        assert client.post(FEEDBACK, json={"feedback": [item(card)]}).status_code == 200
    store: Store = app.extensions["pacing_cds"].store
    store.record_issued_cards("pacing-review", "h-1", [("old-1", "progress")])
    old = datetime.now(UTC) - timedelta(days=400)
    with store.engine.begin() as conn:
        conn.execute(update(FeedbackItem).where(FeedbackItem.card_uuid.like("old-%")).values(received_at=old))
        conn.execute(update(IssuedCard).values(issued_at=old))
    client.post("/cds-services/pacing-review", json={})  # one audit event, recent
    app.extensions["pacing_cds"].close()
    result = subprocess.run([str(Path(sys.executable).parent / "pacing-cds"), "purge"], cwd=tmp_path,
                            env={"PATH": "/usr/bin:/bin", "PACING_CDS_DATABASE_URL": database_url,
                                 "PACING_CDS_RETENTION_DAYS": "365"}, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "2 feedback" in result.stdout and "1 issued cards" in result.stdout
    store = Store(database_url)
    try:
        assert [row["card_uuid"] for row in store.feedback()] == ["new-1"]
        assert len(store.audit_events()) == 1
        with store.engine.connect() as conn:
            assert conn.execute(IssuedCard.__table__.select()).all() == []
            assert conn.execute(AuditEvent.__table__.select()).all()
    finally:
        store.close()


def send_at_once(senders: int, send: Callable[[int], int]) -> list[int]:
    """Each sender's result, all senders released together."""
    start = threading.Barrier(senders)
    results: list[int] = [0] * senders

    def run(index: int) -> None:
        start.wait()
        results[index] = send(index)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_parallel_requests_store_at_most_the_rate(live_service: Callable[..., LiveService], database_url: str) -> None:
    """Workers and threads of a real server count and insert one client's items under one lock: 24 requests of 20
    items sent together from one address store exactly 120, and the others are told 429."""
    service = live_service(database_url=database_url, workers="2", threads="8",
                           feedback_rate_per_minute=str(RATE), feedback_max_items=str(ITEMS_EACH))
    url = f"{service.url}{FEEDBACK}"
    at_now = data.NOW.isoformat().replace("+00:00", "Z")  # the service's pinned clock

    def send(index: int) -> int:
        body = {"feedback": [item(f"p{index}-{n}", outcomeTimestamp=at_now) for n in range(ITEMS_EACH)]}
        with httpx.Client(timeout=60.0) as http:
            return http.post(url, json=body).status_code

    statuses = send_at_once(SENDERS, send)
    store = Store(database_url)
    try:
        stored = len(store.feedback())
    finally:
        store.close()
    assert stored == RATE, f"{stored} items stored against a limit of {RATE} a minute"
    assert sorted(statuses) == [200] * (RATE // ITEMS_EACH) + [429] * (SENDERS - RATE // ITEMS_EACH)


def test_threads_on_their_own_connections_store_at_most_the_rate(database_url: str) -> None:
    """The store alone, each thread on a pooled connection of its own: the count and the insert are one step."""
    store = Store(database_url)
    store.create_schema()
    limit = FeedbackLimit(items=RATE, window=timedelta(minutes=1))

    def send(index: int) -> int:
        items = [Feedback.model_validate(item(f"s{index}-{n}")) for n in range(ITEMS_EACH)]
        try:
            return store.add_feedback("pacing-review", items, "client-a", limit)
        except FeedbackRateExceeded:
            return -1

    try:
        results = send_at_once(SENDERS, send)
        assert sorted(results) == [-1] * (SENDERS - RATE // ITEMS_EACH) + [ITEMS_EACH] * (RATE // ITEMS_EACH)
        assert len(store.feedback()) == RATE
        other = [Feedback.model_validate(item("o-1"))]
        assert store.add_feedback("pacing-review", other, "client-b", limit) == 1, "each client has its own"
    finally:
        store.close()
