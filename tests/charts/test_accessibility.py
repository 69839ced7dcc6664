"""The pages we publish meet WCAG 2.1 A and AA as far as axe-core can tell, in real headless Chromium: the chart, the
take-home plan (in English, in Spanish, and an emergency's), /rules and the panel's worklist.html. The chart has a
text alternative, and the plan prints on one page."""

from __future__ import annotations

import base64
import copy
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium.webdriver.common.print_page_options import PrintOptions

from cds.engine import RuleEngine
from cds.panel.report import page as worklist_page
from cds.panel.rows import evaluate_group
from tests.charts.test_chart_http import local
from tests.conftest import LiveService
from tests.panel.test_rows import export_of, lines
from tests.support.axe import axe_source, described, violations
from tests.support.data import NOW
from tests.support.examples import SCENARIOS, example

pytestmark = pytest.mark.slow  # a browser, a server and npm


@pytest.fixture(scope="module")
def axe() -> str:
    return axe_source()


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=60) as client:
        yield client


def cards(service: LiveService, http: httpx.Client, name: str, language: str | None = None) -> list[dict[str, Any]]:
    body, expected = example(name)
    body = copy.deepcopy(body)
    body["hookInstance"] = str(uuid.uuid4())
    if language is not None:
        body["prefetch"]["patient"]["communication"] = [
            {"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": language}]}, "preferred": True}]
    response = http.post(f"{service.url}/cds-services/{expected['service']}", json=body)
    assert response.status_code == 200, response.text
    return response.json()["cards"]


def plan_url(service: LiveService, card: dict[str, Any]) -> str:
    [url] = [link["url"] for link in card["links"] if link["url"].endswith("/plan")]
    return local(url, service)


def assert_accessible(browser: Any, axe: str, url: str) -> None:
    browser.get(url)
    found = violations(browser, axe)
    assert not found, f"{url}: WCAG 2.1 A/AA violations found by axe-core:\n{described(found)}"


@pytest.mark.parametrize("name", ["step-back-flare", "progress-steps"])
def test_the_chart_is_accessible_and_has_a_text_alternative(chart_service: LiveService, http: httpx.Client,
                                                            browser: Any, axe: str, name: str) -> None:
    [card, *_] = cards(chart_service, http, name)
    url = local(card["links"][0]["url"], chart_service)
    assert_accessible(browser, axe, url)
    svg = browser.find_element("css selector", "figure svg")
    assert svg.get_attribute("role") == "img"
    label = svg.get_attribute("aria-label") or ""
    assert re.search(r"(?i)pain", label) and re.search(r"(?i)steps|minutes", label), \
        f"the chart's text alternative names what it shows: {label!r}"
    assert browser.find_element("css selector", "table#weeks caption").text, "the same numbers as a table"


@pytest.mark.parametrize("name, language", [("progress-walking", None), ("progress-walking", "es"),
                                            ("cauda-equina-undated", None), ("step-back-flare", "fr")])
def test_the_plan_is_accessible(chart_service: LiveService, http: httpx.Client, browser: Any, axe: str, name: str,
                                language: str | None) -> None:
    [card, *_] = cards(chart_service, http, name, language)
    assert_accessible(browser, axe, plan_url(chart_service, card))


def test_the_rules_page_is_accessible(chart_service: LiveService, browser: Any, axe: str) -> None:
    assert_accessible(browser, axe, f"{chart_service.url}/rules")


def test_the_worklist_page_is_accessible(engine: RuleEngine, browser: Any, axe: str, tmp_path: Path) -> None:
    rows = []
    for name in SCENARIOS:
        pid, resources = export_of(name)
        row, _ = evaluate_group(engine, pid, lines(resources), NOW)
        if row is not None:
            rows.append(row)
    meta = {"now": NOW.isoformat(), "version": engine.knowledge.version, "export": "export/",
            "generated": datetime.now(UTC).isoformat(timespec="seconds"), "needs_action": engine.knowledge.info.needs_action,
            "notes": ["an example note"]}
    page = tmp_path / "worklist.html"
    page.write_text(worklist_page(rows, [], meta))
    assert_accessible(browser, axe, page.as_uri())


@pytest.mark.parametrize("name, language", [("progress-walking", "es"), ("cauda-equina-undated", None),
                                            ("step-back-flare", "fr")])
def test_the_plan_prints_on_one_page(chart_service: LiveService, http: httpx.Client, browser: Any, name: str,
                                     language: str | None) -> None:
    [card, *_] = cards(chart_service, http, name, language)
    browser.get(plan_url(chart_service, card))
    for size in ((21.0, 29.7), (21.59, 27.94)):  # A4 and US Letter, in cm
        options = PrintOptions()
        options.page_width, options.page_height = size
        pdf = base64.b64decode(browser.print_page(options))
        pages = len(re.findall(rb"/Type\s*/Page(?!s)", pdf))
        assert pages == 1, f"the plan prints on {pages} pages of {size} cm"


def test_axe_finds_what_a_page_gets_wrong(browser: Any, axe: str, tmp_path: Path) -> None:
    """The check can fail: a page without a language, an image without a text alternative and grey on grey text."""
    page = tmp_path / "wrong.html"
    page.write_text("<!doctype html><html><head><title>x</title></head><body><main><h1>Plan</h1>"
                    "<img src='data:image/png;base64,iVBORw0KGgo='><p style='color:#bbb;background:#ccc'>Low</p>"
                    "</main></body></html>")
    browser.get(page.as_uri())
    found = {v["id"] for v in violations(browser, axe)}
    assert {"html-has-lang", "image-alt", "color-contrast"} <= found, found


def test_a_plan_too_long_for_one_page_is_caught(browser: Any, tmp_path: Path) -> None:
    page = tmp_path / "long.html"
    page.write_text("<!doctype html><html lang=en><title>x</title><main>" + "<p>A sentence.</p>" * 200 + "</main>")
    browser.get(page.as_uri())
    pdf = base64.b64decode(browser.print_page(PrintOptions()))
    assert len(re.findall(rb"/Type\s*/Page(?!s)", pdf)) > 1
