"""`pacing-cds feedback report` counts cards, not feedback events: each card once, by its latest outcome, with the
override reasons of that outcome named as the rule set names them; on SQLite and PostgreSQL."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import delete

from cds import create_app
from cds.cli import feedback_report
from cds.settings import Settings, load_settings
from cds.store.database import AuditEvent, FeedbackItem, IssuedCard
from tests.conftest import LiveService
from tests.support import data
from tests.support.backing import PostgresServer
from tests.support.examples import example
from tests.support.rules import edit

SERVICE = "pacing-review"
FEEDBACK = f"/cds-services/{SERVICE}/feedback"
OURS = "https://pacing-cds.example.org/CodeSystem/override-reason"  # rules/ruleset.yaml override_reason_system


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('report') / 'report.db'}"
    else:
        server: PostgresServer = request.getfixturevalue("postgres_server")
        yield server.database(f"cds_{uuid.uuid4().hex[:8]}")


@pytest.fixture(scope="module")
def settings(database_url: str) -> Settings:
    _, expected = example("progress-walking")
    return load_settings(database_url=database_url, now=expected["now"])


@pytest.fixture(scope="module")
def shared_app(settings: Settings) -> Iterator[Flask]:
    """One app per backend for the module (building one loads the rules); each test starts on empty tables."""
    application = create_app(settings)
    yield application
    application.extensions["pacing_cds"].close()


@pytest.fixture
def app(shared_app: Flask) -> Flask:
    store = shared_app.extensions["pacing_cds"].store
    with store.engine.begin() as conn:
        for table in (FeedbackItem, IssuedCard, AuditEvent):
            conn.execute(delete(table))
    return shared_app


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def issue_card(call: Callable[[str, dict[str, Any]], Any]) -> dict[str, Any]:
    """A card the service really issued, from a service call with a hookInstance of its own."""
    body, _ = example("progress-walking")
    answer = call(f"/cds-services/{SERVICE}", data.with_change(body, "hookInstance", str(uuid.uuid4())))
    assert answer["cards"], "the example answers with a card"
    return dict(answer["cards"][0])


def in_process(client: FlaskClient) -> Callable[[str, dict[str, Any]], Any]:
    def call(path: str, body: dict[str, Any]) -> Any:
        response = client.post(path, json=body)
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_json()
    return call


def accepted(card: dict[str, Any], when: str) -> dict[str, Any]:
    return {"card": card["uuid"], "outcome": "accepted", "outcomeTimestamp": when,
            "acceptedSuggestions": [{"id": card["suggestions"][0]["uuid"]}]}


def overridden(card: dict[str, Any], when: str, code: str | None = None, system: str = OURS,
               display: str | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": when}
    if code is not None:
        reason = {"code": code, "system": system, **({"display": display} if display else {})}
        item["overrideReason"] = {"reason": reason}
    return item


def topic(card: dict[str, Any]) -> str:
    return str(card["source"]["topic"]["code"])


class Report:
    """The printed report, read back as a user reads it: the card table, the reason table, the event line."""

    def __init__(self, text: str) -> None:
        self.text = text
        head, _, reasons = text.partition("\nOverride reasons")
        self.events = re.search(r"events received: (\d+) \((\d+) cards\)", head)
        self.cards = {(r[0], r[1]): tuple(int(n) for n in r[2:]) for r in _rows(head, 5) if r[0] != "service"}
        self.reasons = [r for r in _rows(reasons, 5) if r[0] != "service"]

    def counts(self, topic_code: str) -> tuple[int, ...]:
        """(cards, accepted, overridden) of one topic of the service."""
        return self.cards[(SERVICE, topic_code)]

    def events_and_cards(self) -> tuple[int, int]:
        assert self.events, self.text
        return int(self.events.group(1)), int(self.events.group(2))


def _rows(text: str, columns: int) -> list[list[str]]:
    """Table lines: cells are two or more spaces apart (a cell may hold single spaces)."""
    return [cells for line in text.splitlines() if len(cells := re.split(r"\s{2,}", line.strip())) == columns]


def report(settings: Settings) -> Report:
    out = io.StringIO()
    assert feedback_report(settings, out) == 0
    return Report(out.getvalue())


def post(client: FlaskClient, *items: dict[str, Any]) -> dict[str, Any]:
    return dict(in_process(client)(FEEDBACK, {"feedback": list(items)}))


@pytest.mark.parametrize("arrival", ["in order", "accepted first"])
def test_a_card_overridden_then_accepted_counts_once_as_accepted(client: FlaskClient, app: Flask,
                                                                 settings: Settings, arrival: str) -> None:
    card = issue_card(in_process(client))
    first = overridden(card, "2026-11-20T08:05:00Z", "clinical-judgement")
    later = accepted(card, "2026-11-20T08:30:00Z")
    for item in ([first, later] if arrival == "in order" else [later, first]):  # the EHR may send late
        assert post(client, item) == {"received": 1, "stored": 1}
    shown = report(settings)
    assert shown.counts(topic(card)) == (1, 1, 0)
    assert shown.events_and_cards() == (2, 1)
    assert shown.reasons == [], "the override was replaced by the acceptance"
    assert len(app.extensions["pacing_cds"].store.feedback()) == 2, "both events are kept"


def test_of_two_outcomes_at_the_same_instant_the_later_arrival_counts(client: FlaskClient,
                                                                      settings: Settings) -> None:
    card = issue_card(in_process(client))
    post(client, accepted(card, "2026-11-20T08:30:00Z"))
    post(client, overridden(card, "2026-11-20T08:30:00Z", "patient-declined"))
    assert report(settings).counts(topic(card)) == (1, 0, 1)


def test_the_same_accepted_feedback_sent_twice_counts_once(client: FlaskClient, settings: Settings) -> None:
    card = issue_card(in_process(client))
    item = accepted(card, "2026-11-20T08:30:00Z")
    assert post(client, item) == {"received": 1, "stored": 1}
    assert post(client, item) == {"received": 1, "stored": 0}
    shown = report(settings)
    assert shown.counts(topic(card)) == (1, 1, 0)
    assert shown.events_and_cards() == (1, 1)
    post(client, accepted(card, "2026-11-20T08:31:00Z"))  # re-sent with a new timestamp: a second event
    shown = report(settings)
    assert shown.counts(topic(card)) == (1, 1, 0)
    assert shown.events_and_cards() == (2, 1)


def test_two_different_cards_count_twice(client: FlaskClient, settings: Settings) -> None:
    one, two = issue_card(in_process(client)), issue_card(in_process(client))
    assert one["uuid"] != two["uuid"] and topic(one) == topic(two)
    post(client, accepted(one, "2026-11-20T08:30:00Z"), overridden(two, "2026-11-20T08:30:00Z"))
    shown = report(settings)
    assert shown.counts(topic(one)) == (2, 1, 1)
    assert shown.events_and_cards() == (2, 2)
    assert [SERVICE, topic(two), "-", "(no reason given)", "1"] in shown.reasons


def test_override_reasons_appear_with_the_rule_sets_display_text(client: FlaskClient, settings: Settings) -> None:
    cards = [issue_card(in_process(client)) for _ in range(3)]
    post(client,
         overridden(cards[0], "2026-11-20T08:30:00Z", "patient-declined", display="client's own words"),
         overridden(cards[1], "2026-11-20T08:30:00Z", "patient-declined"),
         overridden(cards[2], "2026-11-20T08:10:00Z", "patient-declined"),
         overridden(cards[2], "2026-11-20T08:20:00Z", "already-addressed"))  # only the latest reason counts
    shown = report(settings)
    assert [SERVICE, topic(cards[0]), "patient-declined", "Patient declined", "2"] in shown.reasons
    assert [SERVICE, topic(cards[0]), "already-addressed", "Already addressed", "1"] in shown.reasons
    assert len(shown.reasons) == 2
    assert "client's own words" not in shown.text


def test_reason_displays_follow_the_rule_set_in_use(client: FlaskClient, database_url: str,
                                                   rules_copy: Path) -> None:
    card = issue_card(in_process(client))
    post(client, overridden(card, "2026-11-20T08:30:00Z", "patient-declined"))
    edit(rules_copy / "ruleset.yaml", "{code: patient-declined, display: Patient declined}",
         "{code: patient-declined, display: Declined by the patient}")
    shown = report(load_settings(database_url=database_url, rules_dir=rules_copy))
    assert [SERVICE, topic(card), "patient-declined", "Declined by the patient", "1"] in shown.reasons


def test_an_unknown_reason_code_appears_as_unknown(client: FlaskClient, settings: Settings) -> None:
    cards = [issue_card(in_process(client)) for _ in range(2)]
    post(client, overridden(cards[0], "2026-11-20T08:30:00Z", "too-busy", display="Too busy"),
         overridden(cards[1], "2026-11-20T08:30:00Z", "patient-declined", system="https://example.org/other"))
    shown = report(settings)
    assert [SERVICE, topic(cards[0]), "too-busy", "(unknown reason)", "1"] in shown.reasons
    assert [SERVICE, topic(cards[1]), "patient-declined", "(unknown reason) system https://example.org/other",
            "1"] in shown.reasons
    assert shown.counts(topic(cards[0])) == (2, 0, 2)


def test_feedback_on_a_card_not_issued_here_is_counted_apart(client: FlaskClient, settings: Settings) -> None:
    card = issue_card(in_process(client))
    post(client, accepted(card, "2026-11-20T08:30:00Z"))
    post(client, overridden({"uuid": "card-from-elsewhere"}, "2026-11-20T08:30:00Z"))
    shown = report(settings)
    assert shown.counts(topic(card)) == (1, 1, 0)
    assert shown.cards[(SERVICE, "(card not issued here)")] == (1, 0, 1)
    assert shown.events_and_cards() == (2, 2)


def test_over_http_the_command_counts_cards(live_service: Callable[..., LiveService], database_url: str,
                                            app: Flask, http: httpx.Client, tmp_path: Path) -> None:
    """`pacing-cds serve` takes the calls and the feedback; the command reads the same (emptied) database."""
    _, expected = example("progress-walking")
    service = live_service(database_url=database_url, now=expected["now"])

    def call(path: str, body: dict[str, Any]) -> Any:
        response = http.post(service.url + path, json=body)
        assert response.status_code == 200, response.text
        return response.json()

    one, two = issue_card(call), issue_card(call)
    call(FEEDBACK, {"feedback": [overridden(one, "2026-11-20T08:05:00Z", "data-not-representative")]})
    call(FEEDBACK, {"feedback": [accepted(one, "2026-11-20T08:30:00Z"), accepted(two, "2026-11-20T08:30:00Z")]})
    call(FEEDBACK, {"feedback": [accepted(two, "2026-11-20T08:30:00Z")]})  # the EHR re-sends
    call(FEEDBACK, {"feedback": [overridden(two, "2026-11-20T08:40:00Z", "no-such-reason")]})
    result = subprocess.run([str(Path(sys.executable).parent / "pacing-cds"), "feedback", "report"],
                            env=service.env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    shown = Report(result.stdout)
    assert shown.counts(topic(one)) == (2, 1, 1)
    assert shown.events_and_cards() == (4, 2)
    assert shown.reasons == [[SERVICE, topic(two), "no-such-reason", "(unknown reason)", "1"]]
    assert any(line.split() == ["total", "2", "1", "1"] for line in result.stdout.splitlines())


@pytest.mark.slow  # runs a command
def test_the_report_refuses_a_rule_set_it_cannot_read(rules_copy: Path, tmp_path: Path) -> None:
    (rules_copy / "ruleset.yaml").write_text("override_reasons: [")
    result = subprocess.run([str(Path(sys.executable).parent / "pacing-cds"), "feedback", "report"],
                            env={"PATH": "/usr/bin:/bin", "PACING_CDS_RULES_DIR": str(rules_copy),
                                 "PACING_CDS_DATABASE_URL": f"sqlite:///{tmp_path / 'none.db'}"},
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "ruleset.yaml line" in result.stderr and "Traceback" not in result.stderr
