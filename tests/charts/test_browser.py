"""The chart and plan pages in a real browser (headless Chromium), opened from the links of real card answers."""

from __future__ import annotations

import io
import json
import os
import re
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from PIL import Image
from selenium.webdriver.common.by import By

from tests.conftest import LiveService
from tests.support.browser import chromium
from tests.support.examples import example
from tests.support.processes import free_port

NOW = "2026-11-20T09:00:00Z"
EXAMPLES = ["progress-walking", "step-back-flare", "boom-bust", "red-flag-on-progress-week"]
SECRET_NAME = ("Zyxwvut", "Secretname")
DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    """One `pacing-cds serve` for the module, evaluating as of the examples' day."""
    workdir = tmp_path_factory.mktemp("charts")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PACING_CDS_")}
    env.update({"PACING_CDS_PORT": str(port), "PACING_CDS_WORKERS": "2", "PACING_CDS_NOW": NOW,
                "PACING_CDS_DATABASE_URL": f"sqlite:///{workdir / 'charts.db'}", "PYTHONUNBUFFERED": "1"})
    live = LiveService(workdir, env, port).start()
    yield live
    live.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with chromium(log=tmp_path_factory.mktemp("chromium") / "chromedriver.log") as driver:
        yield driver


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
def test_card_link_opens_a_chart_whose_table_repeats_the_card(name: str, service: LiveService, browser: Any,
                                                             http: httpx.Client) -> None:
    card = ask(service, http, name)[0]
    driver = browser
    driver.get(chart_link(card))
    assert driver.title == "Pacing chart"
    svg = driver.find_element(By.CSS_SELECTOR, "figure svg")
    assert svg.find_elements(By.CSS_SELECTOR, "g[id^='axes_']"), "no axes in the SVG"
    axis_labels = " ".join(t.get_attribute("textContent") for t in svg.find_elements(By.CSS_SELECTOR, "text"))
    assert "Pain score (0-10)" in axis_labels and "Date" in axis_labels
    paths = [p.get_attribute("d") or "" for p in svg.find_elements(By.CSS_SELECTOR, "g[id^='line2d_'] path")]
    assert any(d.count("L") >= 2 for d in paths), "no data line in the SVG"
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


def test_red_flag_reading_is_marked_on_the_chart(service: LiveService, browser: Any, http: httpx.Client) -> None:
    [card] = ask(service, http, "red-flag-on-progress-week")
    systolic = re.search(r"blood pressure (\d+)/", card["detail"]).group(1)  # type: ignore[union-attr]
    browser.get(chart_link(card))
    texts = [t.get_attribute("textContent") for t in browser.find_elements(By.CSS_SELECTOR, "figure svg text")]
    assert f"red flag: BP {systolic}" in texts


def test_patient_name_and_identifiers_never_reach_the_pages(service: LiveService, browser: Any,
                                                            http: httpx.Client) -> None:
    def rename(body: dict[str, Any]) -> None:
        body["prefetch"]["patient"]["name"] = [{"given": [SECRET_NAME[0]], "family": SECRET_NAME[1]}]

    body, _ = example("step-back-flare")
    identifiers = {body["context"]["patientId"], *re.findall(r'"id": "([^"]+)"', json.dumps(body["prefetch"]))}
    cards = ask(service, http, "step-back-flare", rename)
    for url in (link["url"] for card in cards for link in card["links"]):
        browser.get(url)
        source = browser.page_source
        assert browser.find_element(By.TAG_NAME, "h1").text
        for secret in (*SECRET_NAME, *identifiers):
            assert secret not in source, f"{secret!r} appears on {url}"
