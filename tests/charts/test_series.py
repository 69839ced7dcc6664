"""The series behind a chart, from every example: what it holds, and that its newest week is the card's week."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from cds.charts.model import Dose, Series
from cds.charts.page import headline
from cds.charts.plan import week
from cds.charts.series import card_series, chart_series, has_data
from cds.charts.weeks import weeks
from cds.engine import RuleEngine
from tests.support.examples import BY_NAME, SCENARIOS, example, run_example


def series_of(name: str, engine: RuleEngine) -> tuple[Any, list[dict[str, Any]]]:
    outcome = run_example(name, engine)
    params = {n: p.value for n, p in engine.knowledge.parameters.items()}
    shared = chart_series(outcome.features, outcome.record, outcome.evaluation, params)
    return outcome, [card_series(shared, card) for card in outcome.response.cards] if has_data(shared) else []


@pytest.mark.parametrize("name", SCENARIOS)
def test_newest_week_of_the_table_is_the_week_on_the_card(name: str, engine: RuleEngine) -> None:
    outcome, cards = series_of(name, engine)
    f = outcome.features
    for stored in cards:
        series = Series.model_validate(orjson.loads(orjson.dumps(stored)))
        newest = weeks(series)[-1]
        if f.measure == "minutes" and f.plan is not None and f.has_prescription:
            assert newest.planned == f.plan.weekly
        if f.measure == "steps" and f.quota and f.has_prescription:
            assert newest.planned == f.quota
        if not f.has_prescription:
            assert newest.planned is None, "no plan in force: the chart draws none (a starting quota is a proposal)"
        if f.measure == "steps" and f.mean_daily_steps is not None:
            assert newest.done == pytest.approx(f.mean_daily_steps)
        if f.measure == "minutes" and outcome.record.sessions and f.weekly_minutes is not None:
            assert newest.done == pytest.approx(f.weekly_minutes)
            if f.adherence is not None:
                assert newest.adherence == pytest.approx(f.adherence)
        if f.pain_scale == "NRS" and f.pain_now is not None:
            assert newest.pain_median == pytest.approx(f.pain_now)


@pytest.mark.parametrize("name", SCENARIOS)
def test_series_hold_no_identifier_from_the_request(name: str, engine: RuleEngine) -> None:
    body, _ = example(name)
    ids = {body["context"]["patientId"]}
    for value in body.get("prefetch", {}).values():
        for entry in (value or {}).get("entry", [value]) if isinstance(value, dict) else []:
            resource = entry.get("resource", entry)
            if isinstance(resource, dict) and "id" in resource:
                ids.add(resource["id"])
    _, cards = series_of(name, engine)
    # The recommendation code is the service's own word (an example patient is even called "boom-bust").
    text = orjson.dumps([{k: v for k, v in card.items() if k != "code"} for card in cards]).decode()
    assert not {i for i in ids if i in text}


def test_headline_names_the_recommendation_and_both_doses(engine: RuleEngine) -> None:
    _, [stored] = series_of("progress-walking", engine)
    series = Series.model_validate(stored)
    proposed = BY_NAME["progress-walking"].expected["dose"]  # the example's intended dose
    assert headline(series).startswith(f"Progress: from 20 min x 3/week to {proposed}")
    _, [flag] = series_of("high-blood-pressure-on-progress-week", engine)
    assert headline(Series.model_validate(flag)) == \
        "Precaution: no new dose proposed; the plan in force is 20 min x 3/week."


def test_plan_text_fills_the_dose_in_words_as_the_language_writes_numbers(engine: RuleEngine) -> None:
    english, spanish = engine.knowledge.patient.languages["en"], engine.knowledge.patient.languages["es"]
    assert any("22 minutes, 3 times" in s for s in week(english, "progress", "minutes", Dose(minutes=22, per_week=3)))
    assert any("6,600 steps" in s for s in week(english, "progress", "steps", Dose(quota=6600)))
    assert any("6.600 pasos" in s for s in week(spanish, "progress", "steps", Dose(quota=6600)))
    assert week(english, "hold", "minutes", None) == list(english.plan.this_week["hold"].no_plan)
