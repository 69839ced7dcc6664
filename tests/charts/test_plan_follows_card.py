"""The patient sees what the clinician sees: for every example, the card, the chart's headline and the take-home plan
hold the same recommendation, the same plan in force and the same proposed dose, and a proposal is written as one
until the clinician accepts the card."""

from __future__ import annotations

import re
from typing import Any

import pytest

from cds.charts.model import Series
from cds.charts.page import dose_words, headline, plan_page
from cds.charts.plan import fill_line, week
from cds.charts.series import call_series, card_series, chart_series, has_data
from cds.engine import RuleEngine
from cds.knowledge.patient_text import PatientTexts
from cds.services.proposed import proposed_dose
from tests.support.examples import SCENARIOS, run_example

NUMBER = re.compile(r"\d[\d,]*")


def texts(app: Any) -> PatientTexts:
    return app.extensions["pacing_cds"].engine.knowledge.patient


def call(name: str, engine: RuleEngine) -> tuple[Any, list[Series]]:
    outcome = run_example(name, engine)
    params = {n: p.value for n, p in engine.knowledge.parameters.items()}
    shared = chart_series(outcome.features, outcome.record, outcome.evaluation, params)
    if not outcome.response.cards or not has_data(shared):
        return outcome, []
    shared = call_series(shared, outcome.response.cards, outcome.evaluation)
    return outcome, [Series.model_validate(card_series(shared, card)) for card in outcome.response.cards]


def paragraphs(page: str) -> list[str]:
    """The sentences of the plan's "This week" box."""
    box = page.split('id="this-week"', 1)[1].split("</section>", 1)[0]
    return [re.sub(r"\s+", " ", p).strip() for p in re.findall(r"<p>(.*?)</p>", box, re.S)]


def numbers(text: str) -> set[str]:
    return set(NUMBER.findall(text))


@pytest.mark.parametrize("name", SCENARIOS)
def test_card_chart_and_plan_say_the_same(name: str, engine: RuleEngine, app: Any) -> None:
    words = texts(app).default
    plan = words.plan
    outcome, series = call(name, engine)
    f = outcome.features
    if not series:  # no activity or pain to draw: the cards carry no chart link (tests/charts/test_chart_http.py)
        return
    for card, stored in zip(outcome.response.cards, series, strict=True):
        code = card.source.topic.code
        assert headline(stored).lower().startswith(code.replace("-", " ")), "the chart names the card's code"
        proposed = proposed_dose(card)
        assert (stored.proposed is None) == (proposed is None), "the chart's dashed step is the card's dose"
        if not f.has_prescription:
            assert stored.plan is None and "no plan in force" in headline(stored), \
                "a starting quota or a draft is not drawn or named as the plan in force"
        elif stored.plan is not None:
            assert dose_words(stored, stored.plan) in (card.detail or ""), "the card's plan is the chart's plan"
    lead, lead_card = series[0], outcome.response.cards[0]
    page = plan_page(lead, texts(app))
    this_week = paragraphs(page)
    lead_dose = dose_words(lead, lead.lead_proposed)
    if lead.lead_rule in plan.by_rule:  # an emergency: stop, get help today, and nothing about doses
        assert this_week == plan.by_rule[lead.lead_rule].this_week
        assert not any(numbers(s) for s in this_week)
        kept = plan.by_rule[lead.lead_rule].sections
        assert all(heading in page for heading in kept)
        assert not any(s.heading in page for s in plan.sections if s.heading not in kept)
        return
    code = lead_card.source.topic.code
    expected = week(words, code, lead.measure, lead.plan)
    assert all(sentence in this_week for sentence in expected), "the plan carries the card's recommendation"
    if lead.plan is None:
        assert this_week[0] == plan.no_plan_in_force, "no plan in force is said as such"
    proposal = fill_line(plan.proposed, lead.measure, lead.lead_proposed, words) if lead.lead_proposed else None
    if proposal is None:
        assert not any(s.startswith("Your care team suggests") for s in this_week)
        return
    assert proposal in this_week, f"the proposed {lead_dose} is written as a proposal"
    in_force = numbers(" ".join(week(words, code, lead.measure, lead.plan)))
    for sentence in this_week:
        if sentence != proposal and numbers(sentence) - in_force:
            raise AssertionError(f"{sentence!r} names a dose that is not the plan in force")
    agreed_page = paragraphs(plan_page(lead, texts(app), accepted=True))
    assert fill_line(plan.agreed, lead.measure, lead.lead_proposed, words) in agreed_page, \
        "accepted: the proposal is the plan"
    assert proposal not in agreed_page
    assert all(s in agreed_page for s in week(words, code, lead.measure, lead.lead_proposed))


def test_the_emergency_plan_has_no_pacing_advice(engine: RuleEngine, app: Any) -> None:
    _, [series] = call("cauda-equina-undated", engine)
    page = plan_page(series, texts(app))
    assert "Stop your exercise plan for now." in page and "Get help today." in page
    for advice in ("Stop at the time, not at the pain", "If you have a flare", "Do not add to your exercise"):
        assert advice not in page
    assert "Call your care team right away if" in page


def test_a_steps_patient_whose_goal_could_not_be_read_has_no_quota_on_the_plan(engine: RuleEngine,
                                                                                 app: Any) -> None:
    outcome, [series] = call("goal-unreadable", engine)
    page = plan_page(series, texts(app))
    assert series.plan is None and "steps each day" not in page
    assert texts(app).default.plan.no_plan_in_force in page
    assert "could not be read" in (outcome.response.cards[0].detail or "")
