"""The SQLite database holds chart tokens, audit rows and feedback: it and the -wal and -shm files SQLite keeps
beside it are readable and writable by the service's own user only, whatever the umask, new or already there."""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from cds import create_app
from cds.settings import Settings
from cds.store.database import Store
from tests.support import data

FEEDBACK = "/cds-services/pacing-review/feedback"
COMPANIONS = ("-wal", "-shm", "-journal", "-writer.lock")
OWNER_ONLY = "0o600"


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The common umask 022, under which a new file is readable by everyone unless its creator says otherwise."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def mode(path: Path) -> str:
    return oct(stat.S_IMODE(path.stat().st_mode))


def modes(database: Path) -> dict[str, str]:
    """The mode of the database and of each companion file present."""
    found = {database.name: mode(database)}
    for suffix in COMPANIONS:
        companion = database.with_name(database.name + suffix)
        if companion.exists():
            found[companion.name] = mode(companion)
    return found


@pytest.mark.usefixtures("open_umask")
def test_the_database_and_its_wal_and_shm_are_owner_only_after_a_call_and_feedback(settings: Settings) -> None:
    database = Path(settings.database_url.removeprefix("sqlite:///"))
    app = create_app(settings)
    try:
        client = app.test_client()
        call = client.post("/cds-services/pacing-review", json=data.patient_view("modes-1",
                                                                                 data.full_prefetch("modes-1")))
        assert call.status_code == 200 and call.get_json()["cards"]
        feedback = {"feedback": [{"card": call.get_json()["cards"][0]["uuid"], "outcome": "overridden",
                                  "outcomeTimestamp": "2026-11-20T09:00:00Z"}]}
        assert client.post(FEEDBACK, json=feedback).get_json() == {"received": 1, "stored": 1}
        found = modes(database)
        assert {f"{database.name}-wal", f"{database.name}-shm"} <= set(found), "WAL mode keeps both while open"
        assert found == dict.fromkeys(found, OWNER_ONLY)
    finally:
        app.extensions["pacing_cds"].close()
    assert modes(database) == dict.fromkeys(modes(database), OWNER_ONLY)


@pytest.mark.usefixtures("open_umask")
def test_a_database_left_readable_by_others_is_made_owner_only(tmp_path: Path) -> None:
    database = tmp_path / "old.db"
    with sqlite3.connect(database) as made:  # a database of an earlier version, WAL files left behind
        made.execute("PRAGMA journal_mode=WAL")
        made.execute("CREATE TABLE t (x)")
    for path in (database, database.with_name("old.db-wal"), database.with_name("old.db-shm")):
        path.touch()
        path.chmod(0o644)
    store = Store(f"sqlite:///{database}")
    try:
        store.create_schema()
        assert modes(database) == dict.fromkeys(modes(database), OWNER_ONLY)
    finally:
        store.close()
