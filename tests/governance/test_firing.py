"""`pacing-cds report firing` on a seeded audit, on SQLite and PostgreSQL: per service, rule and UTC day, the
evaluations, the cards shown and silent, and the distinct patients."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import insert

from cds.reports.firing import Firing, as_csv, as_html, firing, firing_command
from cds.settings import load_settings
from cds.store.database import SHOWN, SILENT, AuditEvent, IssuedCard, Store
from tests.support.backing import fresh_database

DAY1, DAY2 = datetime(2026, 11, 18, 23, 30, tzinfo=UTC), datetime(2026, 11, 19, 0, 30, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    seeded = Store(fresh_database(request.param, tmp_path, request))
    seeded.create_schema()
    _seed(seeded)
    yield seeded
    seeded.close()


def _call(at: datetime, status: int = 200, service: str = "pacing-review") -> dict[str, object]:
    return {"time": at, "hook_instance": str(uuid.uuid4()), "service_id": service, "hook": "patient-view",
            "patient_id": "p", "user_id": None, "card_topics": [], "rule_set_version": "0.1.0", "duration_ms": 1.0,
            "status": status, "message": None, "data_sources": None}


def _card(at: datetime, rule: str | None, mode: str, patient: str, topic: str = "progress") -> dict[str, object]:
    return {"card_uuid": str(uuid.uuid4()), "service_id": "pacing-review", "topic": topic, "hook_instance": "h",
            "issued_at": at, "mode": mode, "rule_id": rule, "rule_version": "0.2.0" if rule else None,
            "patient_id": patient, "card": {"summary": "would-be"} if mode == SILENT else None}


def _seed(store: Store) -> None:
    """Day 1 (late evening UTC): three calls answered, one refused; day 2 (just after midnight): one call."""
    with store.engine.begin() as conn:
        conn.execute(insert(AuditEvent), [_call(DAY1), _call(DAY1), _call(DAY1), _call(DAY1, 412), _call(DAY2),
                                          _call(DAY2, service="exercise-order-select")])
        conn.execute(insert(IssuedCard), [
            _card(DAY1, "progress", SHOWN, "a"), _card(DAY1, "progress", SHOWN, "b"),
            _card(DAY1, "progress-faster", SILENT, "a"), _card(DAY1, "progress-faster", SILENT, "a"),
            _card(DAY1, None, SHOWN, "c", topic="hold"),
            _card(DAY2, "progress-faster", SILENT, "d")])


def test_each_rule_and_day_counts_its_modes_patients_and_the_days_evaluations(store: Store) -> None:
    rows = {(r.rule, r.day): r for r in firing(store)}
    assert rows[("progress", "2026-11-18")] == Firing("pacing-review", "progress", "2026-11-18", 3, 2, 0, 2)
    assert rows[("progress-faster", "2026-11-18")] == Firing("pacing-review", "progress-faster", "2026-11-18", 3, 0,
                                                             2, 1)
    assert rows[("progress-faster", "2026-11-19")] == Firing("pacing-review", "progress-faster", "2026-11-19", 1, 0,
                                                             1, 1)
    assert rows[("hold (rule not recorded)", "2026-11-18")].shown == 1
    assert len(rows) == 4
    assert [r.day for r in firing(store, date(2026, 11, 19))] == ["2026-11-19"]


def test_csv_and_page_carry_the_same_numbers() -> None:
    rows = [Firing("pacing-review", "progress-faster", "2026-11-18", 4, 0, 2, 1),
            Firing("pacing-review", "<b>odd</b>", "2026-11-18", 4, 1, 0, 1)]
    parsed = list(csv.DictReader(io.StringIO(as_csv(rows))))
    assert list(parsed[0]) == ["service", "rule", "day", "evaluations", "shown", "silent", "patients"]
    assert parsed[0]["silent"] == "2" and parsed[1]["shown"] == "1"
    page = as_html(rows, {"progress-faster": "silent"}, None, "2026-11-20T09:00:00+00:00")
    assert "<b>odd</b>" not in page and "&lt;b&gt;odd&lt;/b&gt;" in page
    # The silent rule first in the summary, with its firing rate of cards per evaluation.
    summary = page[page.index("Per rule over the period"):page.index("Per day")]
    assert summary.index("progress-faster") < summary.index("odd")
    assert "<td>silent</td><td class=n>4</td><td class=n>0</td><td class=n>2</td><td class=n>50.0%</td>" in summary


def test_the_command_writes_a_private_file_and_refuses_a_bad_date(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    settings = load_settings(database_url=f"sqlite:///{tmp_path / 'cmd.db'}")
    seeded = Store(settings.database_url)
    seeded.create_schema()
    _seed(seeded)
    seeded.close()
    out = tmp_path / "firing.csv"
    assert firing_command(settings, "2026-11-18", "csv", str(out)) == 0
    assert out.stat().st_mode & 0o777 == 0o600
    assert len(list(csv.DictReader(io.StringIO(out.read_text())))) == 4
    assert firing_command(settings, "18/11/2026", "csv", None) == 2
    assert "--since '18/11/2026' is not a date (YYYY-MM-DD)" in capsys.readouterr().err
