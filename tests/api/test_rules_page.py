"""GET /rules: the rule set as a page, every card's source linking to its rule there, over HTTP."""

from __future__ import annotations

import re
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path

import httpx

from cds.api.rules_page import render
from cds.engine import Knowledge, load_knowledge
from tests.conftest import LiveService
from tests.support.examples import example
from tests.support.rules import set_parameter


class Anchors(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.ids.update(value for name, value in attrs if name == "id" and value)


def test_rules_page_lists_every_rule_parameter_and_value_set(live_service: Callable[..., LiveService],
                                                            http: httpx.Client, knowledge: Knowledge) -> None:
    service = live_service()
    response = http.get(f"{service.url}/rules")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in response.headers["content-security-policy"]
    page = response.text
    anchors = Anchors()
    anchors.feed(page)
    assert {c.rule.id for c in knowledge.rules} <= anchors.ids
    assert {f"param-{name}" for name in knowledge.parameters} <= anchors.ids
    assert {f"value-set-{vs}" for vs in knowledge.value_sets} <= anchors.ids
    assert knowledge.version in page
    fever = knowledge.parameters["fever_celsius"]
    assert re.search(rf"<code>fever_celsius</code></td><td>{fever.value} {fever.unit}</td>", page)
    assert "derived" in page and "<script" not in page
    pregnancy = knowledge.value_sets["pregnancy"]
    assert pregnancy.note and f"not on red-flag, precaution cards: <q>{pregnancy.note}</q>" in page
    assert "statuses" in anchors.ids, "the status table is on the page"
    assert re.search(r"<code>Condition.clinicalStatus</code></td><td>active, recurrence, relapse</td>"
                     r"<td>inactive, remission, resolved</td>", page)
    assert "counts whatever its clinical status, remission and inactive included" in page  # metastatic disease


def test_every_card_links_to_its_rule_on_the_page(live_service: Callable[..., LiveService],
                                                  http: httpx.Client) -> None:
    service = live_service(now="2026-11-20T09:00:00Z")
    anchors = Anchors()
    anchors.feed(http.get(f"{service.url}/rules").text)
    for name in ("progress-walking", "cauda-equina-undated", "order-dose-jump", "high-blood-pressure-on-progress-week"):
        body, expected = example(name)
        cards = http.post(f"{service.url}/cds-services/{expected['service']}", json=body).json()["cards"]
        assert cards, name
        for card in cards:
            url = card["source"]["url"]
            assert url.startswith(f"{service.url}/rules#"), url
            assert url.split("#", 1)[1] in anchors.ids, url


def test_the_page_shows_rule_texts_with_the_values_of_the_rules_in_use(rules_copy: Path, knowledge: Knowledge) -> None:
    """A site that tunes a threshold reads its own value in every rule text that names it, never a stale number."""
    adherence = round(knowledge.values["adherence_min"] - 0.05, 2)
    set_parameter(rules_copy, "adherence_min", adherence)
    page = render(load_knowledge(rules_copy))
    assert f"at least {adherence:.0%} of the planned dose" in page
    assert f"at least {knowledge.values['adherence_min']:.0%} of the planned dose" not in page
    assert "{adherence_min" not in page
    fever = knowledge.values["fever_celsius"]
    assert f"A body temperature of {fever:.1f} Cel or more" in render(knowledge)
