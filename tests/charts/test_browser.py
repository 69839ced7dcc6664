"""The chart and plan pages in a real browser (headless Chromium), opened from the links of real card answers."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from PIL import Image
from selenium.webdriver.common.by import By

from tests.conftest import LiveService
from tests.support.examples import example

EXAMPLES = ["progress-walking", "step-back-flare", "boom-bust", "high-blood-pressure-on-progress-week"]
SECRET_NAME = ("Zyxwvut", "Secretname")
DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def ask(service: LiveService, http: httpx.Client, name: str,
        change: Callable[[dict[str, Any]], Any] | None = None) -> list[dict[str, Any]]:
    """The cards a live service answers for an example request."""
    body, expected = example(name)
    if change:
        change(body)
    response = http.post(f"{service.url}/cds-services/{expected['service']}", json=body)
    assert response.status_code == 200, response.text
    return response.json()["cards"]


def chart_link(card: dict[str, Any]) -> str:
    [link] = [link for link in card.get("links", []) if link["label"] == "Open the pacing chart"]
    assert link["type"] == "absolute"
    return link["url"]


def detail_numbers(detail: str) -> set[str]:
    """Every number in a card's detail, as written (thousands separators dropped), dates left out."""
    return {n.replace(",", "") for n in re.findall(r"\d[\d,]*(?:\.\d+)?%?", DATE.sub(" ", detail))}


def newest_row(driver: Any) -> dict[str, str]:
    headers = [th.text.split(" (")[0].strip().lower() for th in driver.find_elements(By.CSS_SELECTOR, "#weeks thead th")]
    first = driver.find_element(By.CSS_SELECTOR, "#weeks tbody tr")
    cells = [first.find_element(By.CSS_SELECTOR, "th").text] + [td.text for td in first.find_elements(By.CSS_SELECTOR, "td")]
    return dict(zip(headers, cells))


def assert_not_blank(png: bytes) -> None:
    image = Image.open(io.BytesIO(png)).convert("RGB")
    colours = image.getcolors(maxcolors=1 << 20) or []
    assert len(colours) > 50, "screenshot is (nearly) one colour"
    white = sum(count for count, rgb in colours if rgb == (255, 255, 255))
    assert white < 0.97 * image.width * image.height


@pytest.mark.parametrize("name", EXAMPLES)
def test_card_link_opens_a_chart_whose_table_repeats_the_card(name: str, chart_service: LiveService, browser: Any,
                                                             http: httpx.Client) -> None:
    card = ask(chart_service, http, name)[0]
    driver = browser
    driver.get(chart_link(card))
    assert driver.title == "Pacing chart"
    svg = driver.find_element(By.CSS_SELECTOR, "figure svg")
    assert svg.find_elements(By.CSS_SELECTOR, "g[id^='axes_']"), "no axes in the SVG"
    axis_labels = " ".join(t.get_attribute("textContent") for t in svg.find_elements(By.CSS_SELECTOR, "text"))
    assert "Pain score (0-10)" in axis_labels and "Date" in axis_labels
    bars = [p.get_attribute("d") or "" for p in svg.find_elements(By.CSS_SELECTOR, "#activity path")]
    assert bars and all(re.match(r"M\s*[\d.]+\s+[\d.]+\s*L\s*[\d.]+\s+[\d.]+", d) for d in bars), "no activity bars"
    pain = svg.find_element(By.CSS_SELECTOR, "#pain path").get_attribute("d") or ""
    assert pain.count("L") >= 2, "no pain line in the SVG"
    assert svg.find_element(By.CSS_SELECTOR, "#plan path").get_attribute("d"), "no plan line"
    row = newest_row(driver)
    numbers = detail_numbers(card["detail"])
    for column in ("planned", "done", "adherence", "median pain"):
        assert row[column], f"{column} empty in {row}"
        assert row[column].replace(",", "") in numbers, f"{column} {row[column]} not in the card: {numbers}"
    headline = driver.find_element(By.ID, "recommendation").text
    assert headline.lower().startswith(card["source"]["topic"]["code"].replace("-", " "))
    assert_not_blank(driver.get_screenshot_as_png())
    driver.find_element(By.ID, "plan-link").click()
    assert driver.find_element(By.ID, "this-week").text.strip()
    assert driver.current_url == card["links"][1]["url"]


def test_red_flag_reading_is_marked_on_the_chart(chart_service: LiveService, browser: Any, http: httpx.Client) -> None:
    [card] = ask(chart_service, http, "high-blood-pressure-on-progress-week")
    systolic = re.search(r"blood pressure (\d+)/", card["detail"]).group(1)  # type: ignore[union-attr]
    browser.get(chart_link(card))
    texts = [t.get_attribute("textContent") for t in browser.find_elements(By.CSS_SELECTOR, "figure svg text")]
    assert f"red flag: BP {systolic}" in texts


def test_patient_name_and_identifiers_never_reach_the_pages(chart_service: LiveService, browser: Any,
                                                            http: httpx.Client) -> None:
    def rename(body: dict[str, Any]) -> None:
        body["prefetch"]["patient"]["name"] = [{"given": [SECRET_NAME[0]], "family": SECRET_NAME[1]}]

    body, _ = example("step-back-flare")
    identifiers = {body["context"]["patientId"], *re.findall(r'"id": "([^"]+)"', json.dumps(body["prefetch"]))}
    cards = ask(chart_service, http, "step-back-flare", rename)
    for url in (link["url"] for card in cards for link in card["links"]):
        browser.get(url)
        source = browser.page_source
        assert browser.find_element(By.TAG_NAME, "h1").text
        for secret in (*SECRET_NAME, *identifiers):
            assert secret not in source, f"{secret!r} appears on {url}"
