"""Nothing lost: feedback acknowledged is feedback stored, under concurrency and across kill -9, on SQLite and
PostgreSQL; the schema comes from migrations that match the models.
PACING_CDS_DURABILITY_POSTS sets the posts per client of the load test (8 clients): 500 gives the full-size run of
4,000 posts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from cds.store.database import Base, Store
from tests.conftest import LiveService
from tests.support import data
from tests.support.backing import PostgresServer

pytestmark = pytest.mark.slow  # kills a serving process mid-load

CLIENTS, POSTS = 8, int(os.environ.get("PACING_CDS_DURABILITY_POSTS", "100"))
KILL_POSTS = 500  # per client while the server is killed: the load is still under way when it dies


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'durable.db'}"
    else:
        server: PostgresServer = request.getfixturevalue("postgres_server")
        yield server.database(f"cds_{uuid.uuid4().hex[:8]}")


def item(card: str) -> dict[str, Any]:
    return {"card": card, "outcome": "overridden", "outcomeTimestamp": "2026-11-20T08:00:00Z",
            "overrideReason": {"reason": {"code": "clinical-judgement", "system": "https://example.org/r"}}}


def test_migrations_build_exactly_the_models(database_url: str) -> None:
    store = Store(database_url)
    try:
        store.create_schema()
        store.create_schema()  # idempotent
        with store.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
        assert diff == []
    finally:
        store.close()


def test_concurrent_migrations_from_several_processes(database_url: str) -> None:
    """As gunicorn workers starting together do: four processes migrate the same empty database at once."""
    code = "import sys; from cds.store.database import Store; s = Store(sys.argv[1]); s.create_schema(); s.close()"
    procs = [subprocess.Popen([sys.executable, "-c", code, database_url], stderr=subprocess.PIPE, text=True)
             for _ in range(4)]
    outcomes = [(p.wait(timeout=120), p.stderr.read() if p.stderr else "") for p in procs]
    for proc in procs:
        if proc.stderr:
            proc.stderr.close()
    assert [code for code, _ in outcomes] == [0, 0, 0, 0], [err[-500:] for _, err in outcomes]
    store = Store(database_url)
    try:
        with store.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
        assert diff == []
    finally:
        store.close()


def post_all(url: str, prefix: str, posts: int, stop: threading.Event | None = None,
             acknowledged: list[str] | None = None) -> tuple[list[str], int]:
    """CLIENTS threads x `posts` posts of one distinct item each; the cards acknowledged (also appended to
    `acknowledged` as they come, when given), and errors seen."""
    acknowledged = [] if acknowledged is None else acknowledged
    failures = 0
    lock = threading.Lock()

    def client(index: int) -> None:
        nonlocal failures
        with httpx.Client(timeout=10.0) as http:
            for n in range(posts):
                if stop is not None and stop.is_set():
                    return
                card = f"{prefix}-{index}-{n}"
                try:
                    response = http.post(url, json={"feedback": [item(card)]})
                except httpx.HTTPError:
                    with lock:
                        failures += 1
                    if stop is not None:
                        return
                    continue
                with lock:
                    if response.status_code == 200 and response.json() == {"received": 1, "stored": 1}:
                        acknowledged.append(card)
                    else:
                        failures += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return acknowledged, failures


def stored_cards(database_url: str) -> list[str]:
    store = Store(database_url)
    try:
        return [row["card_uuid"] for row in store.feedback()]
    finally:
        store.close()


def test_8_concurrent_clients_every_post_stored_exactly_once(live_service: Callable[..., LiveService],
                                                            database_url: str) -> None:
    # One address sends all CLIENTS x POSTS items: a load test, not a client to rate-limit.
    service = live_service(database_url=database_url, workers="2", threads="8", feedback_rate_per_minute="100000")
    url = f"{service.url}/cds-services/pacing-review/feedback"
    acknowledged, failures = post_all(url, "load", POSTS)
    assert failures == 0
    assert len(acknowledged) == CLIENTS * POSTS
    stored = stored_cards(database_url)
    assert sorted(stored) == sorted(acknowledged), "every item stored exactly once"
    with httpx.Client(timeout=10) as http:  # a repeat is acknowledged and not stored twice
        assert http.post(url, json={"feedback": [item(acknowledged[0])]}).json() == {"received": 1, "stored": 0}
    assert len(stored_cards(database_url)) == CLIENTS * POSTS


def test_kill_9_in_the_middle_loses_nothing_acknowledged(live_service: Callable[..., LiveService],
                                                        database_url: str) -> None:
    service = live_service(database_url=database_url, workers="2", threads="8", feedback_rate_per_minute="100000")
    url = f"{service.url}/cds-services/pacing-review/feedback"
    stop = threading.Event()
    result: dict[str, Any] = {}
    live: list[str] = []
    loader = threading.Thread(target=lambda: result.update(zip(("ack", "fail"),
                                                               post_all(url, "kill", KILL_POSTS, stop, live))))
    loader.start()
    waited = time.monotonic() + 60
    while len(live) <= 50 and time.monotonic() < waited and loader.is_alive():  # load under way, however slow
        time.sleep(0.05)
    service.stop(signal.SIGKILL)  # the whole process group, master and workers, mid-load
    stop.set()
    loader.join()
    acknowledged = result["ack"]
    assert len(acknowledged) > 50, "the load was under way when the server died"
    service.start()
    stored = set(stored_cards(database_url))
    lost = [card for card in acknowledged if card not in stored]
    print(f"\nkill -9 mid-load: {len(acknowledged)} acknowledged, {result['fail']} cut off, "
          f"{len(stored)} stored, {len(lost)} lost")
    assert lost == []
    with httpx.Client(timeout=10) as http:
        assert http.get(f"{service.url}/healthz").json() == {"status": "ok"}


def test_kill_9_in_the_middle_keeps_the_audit_record_of_every_answered_call(
        live_service: Callable[..., LiveService], database_url: str) -> None:
    """The audit record is committed before the answer leaves (WAL, synchronous NORMAL on SQLite): a call the EHR
    got an answer to has its record, even when the whole service is killed mid-load."""
    service = live_service(database_url=database_url, workers="2", threads="2")
    url = f"{service.url}/cds-services/pacing-review"
    stop = threading.Event()
    answered: list[str] = []
    lock = threading.Lock()

    def client(index: int) -> None:
        with httpx.Client(timeout=30.0) as http:
            for n in range(1000):
                if stop.is_set():
                    return
                body = data.patient_view(f"audit-{index}-{n}", data.full_prefetch(f"audit-{index}-{n}"))
                try:
                    response = http.post(url, json=body)
                except httpx.HTTPError:
                    return
                if response.status_code == 200 and "cards" in response.json():
                    with lock:
                        answered.append(body["hookInstance"])

    clients = [threading.Thread(target=client, args=(i,)) for i in range(4)]
    for thread in clients:
        thread.start()
    waited = time.monotonic() + 120
    while len(answered) <= 40 and time.monotonic() < waited and any(t.is_alive() for t in clients):
        time.sleep(0.05)
    service.stop(signal.SIGKILL)  # master and workers, mid-load
    stop.set()
    for thread in clients:
        thread.join()
    assert len(answered) > 40, "the load was under way when the server died"
    store = Store(database_url)
    try:
        recorded = {row["hook_instance"] for row in store.audit_events()}
    finally:
        store.close()
    missing = [hook_instance for hook_instance in answered if hook_instance not in recorded]
    assert missing == [], f"{len(missing)} answered calls without an audit record"
