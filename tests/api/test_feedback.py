"""POST /cds-services/{id}/feedback: spec examples stored once each; the report counts them."""

from __future__ import annotations

import io
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from cds.api.feedback import OUTCOME_CLOCK_SKEW
from cds.cli import feedback_report
from cds.settings import Settings
from tests.support import data

FEEDBACK = "/cds-services/pacing-review/feedback"


def post(client: FlaskClient, body: Any, path: str = FEEDBACK) -> Any:
    return client.post(path, data=json.dumps(body), content_type="application/json")


def stored(app: Flask) -> list[dict[str, Any]]:
    return app.extensions["pacing_cds"].store.feedback()


@pytest.mark.parametrize("name", ["feedback-accepted.json", "feedback-overridden.json",
                                  "feedback-overridden-reason.json"])
def test_spec_examples_are_stored(app: Flask, client: FlaskClient, name: str) -> None:
    example = data.spec_example(name)
    response = post(client, example)
    assert response.status_code == 200
    assert response.get_json() == {"received": 1, "stored": 1}
    [row] = stored(app)
    item = example["feedback"][0]
    assert (row["card_uuid"], row["outcome"], row["service_id"]) == (item["card"], item["outcome"], "pacing-review")
    if "acceptedSuggestions" in item:
        assert row["accepted_suggestions"] == [item["acceptedSuggestions"][0]["id"]]
    if "overrideReason" in item:
        assert row["override_code"] == "d7ecf885"
        assert row["user_comment"] == "A comment entered by the clinician."


def test_a_repeated_item_is_stored_once(app: Flask, client: FlaskClient) -> None:
    example = data.spec_example("feedback-accepted.json")
    assert post(client, example).get_json() == {"received": 1, "stored": 1}
    assert post(client, example).get_json() == {"received": 1, "stored": 0}
    twice_in_one = {"feedback": example["feedback"] * 2}
    assert post(client, twice_in_one).get_json() == {"received": 2, "stored": 0}
    assert len(stored(app)) == 1


def test_the_same_card_acted_on_again_later_is_a_new_item(app: Flask, client: FlaskClient) -> None:
    first = data.spec_example("feedback-overridden.json")
    later = data.with_change(first, "feedback.0.outcomeTimestamp", "2020-12-12T09:00:00Z")
    post(client, first)
    assert post(client, later).get_json()["stored"] == 1
    assert len(stored(app)) == 2


def test_the_same_item_for_another_service_is_kept_apart(app: Flask, client: FlaskClient) -> None:
    example = data.spec_example("feedback-overridden.json")
    post(client, example)
    post(client, example, "/cds-services/exercise-order-sign/feedback")
    assert sorted(r["service_id"] for r in stored(app)) == ["exercise-order-sign", "pacing-review"]


@pytest.mark.parametrize(("body", "fragment"), [
    ({}, "feedback: Field required"),
    ({"feedback": []}, "feedback: List should have at least 1 item"),
    ({"feedback": [{"card": "c", "outcome": "accepted", "outcomeTimestamp": "2021-12-11T10:05:31Z"}]},
     "an accepted outcome needs acceptedSuggestions"),
    ({"feedback": [{"card": "c", "outcome": "dismissed", "outcomeTimestamp": "2021-12-11T10:05:31Z"}]},
     "feedback[0].outcome"),
    ({"feedback": [{"card": "c", "outcome": "overridden"}]}, "feedback[0].outcomeTimestamp: Field required"),
    ({"feedback": [{"card": "c", "outcome": "overridden", "outcomeTimestamp": "yesterday"}]},
     "feedback[0].outcomeTimestamp"),
    ({"feedback": [{"card": "c", "outcome": "overridden", "outcomeTimestamp": 1607644800}]},
     "must be an RFC 3339 date-time string"),
    ({"feedback": [{"card": 5, "outcome": "overridden", "outcomeTimestamp": "2021-12-11T10:05:31Z"}]},
     "feedback[0].card"),
])
def test_invalid_feedback_is_400_and_nothing_is_stored(app: Flask, client: FlaskClient, body: Any,
                                                       fragment: str) -> None:
    response = post(client, body)
    assert response.status_code == 400
    assert fragment in response.get_json()["issue"][0]["details"]["text"]
    assert stored(app) == []


@pytest.mark.parametrize("when", ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00"])
def test_a_timestamp_outside_the_years_1_to_9999_in_utc_is_400(app: Flask, client: FlaskClient, when: str) -> None:
    """Valid RFC 3339 text whose instant in UTC falls outside the years a datetime holds: named, not a 500."""
    body = data.with_change(data.spec_example("feedback-overridden.json"), "feedback.0.outcomeTimestamp", when)
    response = post(client, body)
    assert response.status_code == 400
    issue = response.get_json()["issue"][0]
    assert issue["expression"] == ["feedback[0].outcomeTimestamp"]
    assert "feedback[0].outcomeTimestamp: must be an instant from year 1 to 9999 in UTC" in issue["details"]["text"]
    assert stored(app) == []


def outcome_at(card: str, when: datetime) -> dict[str, Any]:
    return {"card": card, "outcome": "overridden", "outcomeTimestamp": when.isoformat().replace("+00:00", "Z")}


def test_an_outcome_ahead_of_the_clock_past_the_allowed_skew_is_400(app: Flask, client: FlaskClient) -> None:
    """The service's clock is pinned at data.NOW; an EHR clock that far ahead is refused, item by item."""
    within = data.NOW + OUTCOME_CLOCK_SKEW
    beyond = within + timedelta(seconds=1)
    response = post(client, {"feedback": [outcome_at("c-1", within), outcome_at("c-2", beyond),
                                          outcome_at("c-3", data.NOW), outcome_at("c-4", datetime(9000, 1, 1,
                                                                                                   tzinfo=UTC))]})
    assert response.status_code == 400
    issue = response.get_json()["issue"][0]
    assert issue["expression"] == ["feedback[1].outcomeTimestamp", "feedback[3].outcomeTimestamp"]
    assert "feedback[1].outcomeTimestamp: must not be later than" in issue["details"]["text"]
    assert stored(app) == [], "nothing of a refused request is stored"
    assert post(client, {"feedback": [outcome_at("c-1", within)]}).get_json() == {"received": 1, "stored": 1}


def test_a_far_future_outcome_cannot_pin_a_cards_outcome(app: Flask, client: FlaskClient) -> None:
    """The latest outcome of a card wins by its timestamp: one dated years ahead would outrank every real one."""
    store = app.extensions["pacing_cds"].store
    store.record_issued_cards("pacing-review", "hook-1", [("card-pinned", "progress")])
    pin = outcome_at("card-pinned", datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC))
    assert post(client, {"feedback": [pin]}).status_code == 400
    accepted = {"card": "card-pinned", "outcome": "accepted", "acceptedSuggestions": [{"id": "s1"}],
                "outcomeTimestamp": "2026-11-20T08:59:00Z"}
    assert post(client, {"feedback": [accepted]}).get_json() == {"received": 1, "stored": 1}
    assert store.card_accepted("card-pinned")
    [group] = store.feedback_report().groups
    assert (group.topic, group.outcome, group.cards, group.events) == ("progress", "accepted", 1, 1)


def test_feedback_for_an_unknown_service_is_404(client: FlaskClient) -> None:
    response = post(client, data.spec_example("feedback-accepted.json"), "/cds-services/nope/feedback")
    assert response.status_code == 404


def test_report_counts_per_service_and_topic_with_reasons(app: Flask, client: FlaskClient,
                                                          settings: Settings) -> None:
    store = app.extensions["pacing_cds"].store
    store.record_issued_cards("pacing-review", "hook-1", [("card-progress", "progress"), ("card-hold", "hold"),
                                                          ("card-progress-2", "progress")])
    reason = {"code": "patient-declined", "system": "https://pacing-cds.example.org/CodeSystem/override-reason"}
    items = [
        {"card": "card-progress", "outcome": "accepted", "acceptedSuggestions": [{"id": "s1"}],
         "outcomeTimestamp": "2026-11-20T06:00:00Z"},
        {"card": "card-progress", "outcome": "accepted", "acceptedSuggestions": [{"id": "s1"}],
         "outcomeTimestamp": "2026-11-20T07:00:00Z"},
        {"card": "card-progress", "outcome": "overridden", "overrideReason": {"reason": reason},
         "outcomeTimestamp": "2026-11-20T08:00:00Z"},
        {"card": "card-progress-2", "outcome": "accepted", "acceptedSuggestions": [{"id": "s2"}],
         "outcomeTimestamp": "2026-11-20T08:00:00Z"},
        {"card": "card-hold", "outcome": "overridden", "outcomeTimestamp": "2026-11-20T08:00:00Z"},
        {"card": "card-from-elsewhere", "outcome": "overridden", "outcomeTimestamp": "2026-11-20T08:00:00Z"},
    ]
    assert post(client, {"feedback": items}).get_json() == {"received": 6, "stored": 6}
    out = io.StringIO()
    assert feedback_report(settings, out) == 0
    lines = out.getvalue().splitlines()
    rows = [re.split(r"\s{2,}", line.strip()) for line in lines]
    assert "events received: 6 (4 cards)" in lines
    assert ["pacing-review", "progress", "2", "1", "1"] in rows  # card-progress counts once, by its last outcome
    assert ["pacing-review", "hold", "1", "0", "1"] in rows
    assert ["pacing-review", "(card not issued here)", "1", "0", "1"] in rows
    assert ["total", "4", "1", "3"] in rows
    assert ["pacing-review", "progress", "patient-declined", "Patient declined", "1"] in rows
    assert ["pacing-review", "hold", "-", "(no reason given)", "1"] in rows


def test_report_on_an_empty_database(settings: Settings) -> None:
    out = io.StringIO()
    assert feedback_report(settings, out) == 0
    assert "No feedback stored." in out.getvalue()
