"""The chart and plan pages over HTTP from `pacing-cds serve`: links, what is stored, expiry, headers, errors."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy import select

from cds.store.database import ChartRecord, Store
from tests.charts.conftest import NOW
from tests.conftest import ROOT, LiveService
from tests.support.backing import PostgresServer
from tests.support.examples import example

Start = Callable[..., LiveService]


def cards_for(service: LiveService, http: httpx.Client, name: str, **headers: str) -> list[dict[str, Any]]:
    body, expected = example(name)
    response = http.post(f"{service.url}/cds-services/{expected['service']}", json=body, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["cards"]


def local(url: str, service: LiveService) -> str:
    """A link's path on this service (the links carry PUBLIC_BASE_URL)."""
    return service.url + "/charts/" + url.split("/charts/", 1)[1]


def assert_strict_headers(response: httpx.Response) -> None:
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["referrer-policy"] == "no-referrer"
    csp = response.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp and "unsafe-eval" not in csp


class Text(HTMLParser):
    """The visible sentences of a page: the text of each block element."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks: list[str] = []
        self._open: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("h1", "h2", "p", "li", "title"):
            self._open = tag
            self.blocks.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == self._open:
            self._open = None

    def handle_data(self, data: str) -> None:
        if self._open:
            self.blocks[-1] += data


def test_every_card_with_data_links_to_its_own_chart_and_plan(chart_service: LiveService, http: httpx.Client) -> None:
    service = chart_service
    cards = cards_for(service, http, "boom-bust")
    assert len(cards) == 2
    tokens = set()
    for card in cards:
        chart, plan = card["links"]
        assert chart["label"] == "Open the pacing chart" and chart["type"] == "absolute"
        assert plan["type"] == "absolute" and plan["url"] == chart["url"] + "/plan"
        token = re.fullmatch(re.escape(service.url) + r"/charts/([A-Za-z0-9_-]+)", chart["url"]).group(1)  # type: ignore[union-attr]
        assert len(token) * 6 >= 128
        tokens.add(token)
        page = http.get(local(chart["url"], service))
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert_strict_headers(page)
        assert "<script" not in page.text.lower()
    assert len(tokens) == 2


def test_no_links_without_data(chart_service: LiveService, http: httpx.Client) -> None:
    service = chart_service
    [card] = cards_for(service, http, "order-no-baseline")
    assert "links" not in card


def test_what_is_stored_is_dates_numbers_and_codes(chart_service: LiveService, http: httpx.Client) -> None:
    service = chart_service
    body, _ = example("high-blood-pressure-on-progress-week")
    cards = cards_for(service, http, "high-blood-pressure-on-progress-week")
    token = cards[0]["links"][0]["url"].rsplit("/", 1)[1]
    store = Store(service.env["PACING_CDS_DATABASE_URL"])
    try:
        with store.engine.connect() as conn:
            [(stored, created, expires)] = conn.execute(
                select(ChartRecord.series, ChartRecord.created_at, ChartRecord.expires_at)
                .where(ChartRecord.token == token)).all()
    finally:
        store.close()
    assert round((expires - created).total_seconds()) == 24 * 3600
    words = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            words.update(value)
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)
        elif isinstance(value, str):
            if not re.fullmatch(r"\d{4}-\d{2}-\d{2}(T[\d:.]+(\+00:00)?)?", value):
                words.add(value)
        else:
            assert value is None or isinstance(value, int | float), value

    walk(stored)
    # The service's own words: codes, the rule behind the card, and the card's uuid (made by this service).
    codes = {"minutes", "steps", "progress", "precaution", "blood-pressure", "precaution-blood-pressure",
             cards[0]["uuid"]}
    assert words - codes <= {"v", "measure", "now", "sessions", "steps", "pain", "pain_baseline", "orders", "plan",
                             "red_flags", "params", "code", "proposed", "minutes", "per_week", "quota",
                             "flare_delta", "boom_day_ratio", "bust_day_ratio", "boom_bust_window_hours",
                             "codes", "lead_rule", "lead_proposed", "lead_card", "language"}
    assert stored["language"] is None, "a record that names no language stores none"
    text = json.dumps(stored)
    for secret in {body["context"]["patientId"], *re.findall(r'"id": "([^"]+)"', json.dumps(body["prefetch"]))}:
        assert secret not in text


def test_unknown_malformed_and_expired_tokens(live_service: Start, http: httpx.Client) -> None:
    service = live_service(now=NOW, chart_ttl_h=str(2 / 3600), public_base_url="https://cds.example.org/pacing")
    [card] = cards_for(service, http, "progress-walking")
    assert card["links"][0]["url"].startswith("https://cds.example.org/pacing/charts/")
    url = local(card["links"][0]["url"], service)
    assert http.get(url).status_code == 200
    token = url.rsplit("/", 1)[1]
    for path, status in ((f"/charts/{'A' * 32}", 404), (f"/charts/{token[:-1]}", 404), ("/charts/%00%3Cx%3E", 404),
                         (f"/charts/{token}x/plan", 404), (f"/charts/{'A' * 500}", 404)):
        response = http.get(service.url + path)
        assert response.status_code == status, path
        assert response.json()["resourceType"] == "OperationOutcome"
        assert_strict_headers(response)
    deadline = time.monotonic() + 30
    while http.get(url).status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.5)
    for gone in (http.get(url), http.get(url + "/plan")):
        assert gone.status_code == 410
        assert gone.headers["content-type"].startswith("application/json")
        assert "svg" not in gone.text and "steps" not in gone.text and "Exercise" not in gone.text
        assert_strict_headers(gone)
    assert http.post(url).status_code == 405
    assert token not in service.log()  # a token is a credential: never logged


def test_plan_sentences_all_come_from_the_rules_folder(chart_service: LiveService, http: httpx.Client) -> None:
    service = chart_service
    source = yaml.safe_load((ROOT / "rules/patient-text/en.yaml").read_text())["plan"]
    templates = [source["title"], source["this_week_heading"], *source["intro"], "Made on {date}."]
    templates += [s for section in source["sections"] for s in (section["heading"], *section["sentences"])]
    templates += [s for entry in source["this_week"].values() for kind in entry.values() for s in kind]
    templates += [source["no_plan_in_force"], *source["proposed"].values(), *source["agreed"].values()]
    templates += [s for entry in source["by_rule"].values() for s in entry["this_week"]]
    patterns = [re.compile(re.escape(t).replace(r"\{minutes\}", r"\d+").replace(r"\{per_week\}", r"\d+")
                           .replace(r"\{steps\}", r"[\d,]+").replace(r"\{date\}", r"[A-Z][a-z]+ \d+, \d{4}") + "$")
                for t in templates]
    for name, dose in (("progress-walking", "22 minutes, 3 times"), ("progress-steps", "5,500 steps")):
        [plan_url, *_] = [link["url"] for card in cards_for(service, http, name) for link in card["links"][1:]]
        page = http.get(local(plan_url, service))
        assert page.status_code == 200
        assert_strict_headers(page)
        parser = Text()
        parser.feed(page.text)
        blocks = [" ".join(b.split()) for b in parser.blocks if b.strip()]
        assert blocks
        for block in blocks:
            assert any(p.match(block) for p in patterns), f"{block!r} is not from rules/patient-text/en.yaml"
        assert dose in page.text


def test_chart_pages_open_without_a_jwt_when_clients_must_authenticate(live_service: Start, http: httpx.Client,
                                                                        tmp_path: Path) -> None:
    import jwt
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP384R1())
    jwk = {**json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key())), "kid": "k1"}
    issuers = tmp_path / "issuers.yaml"
    issuers.write_text(yaml.safe_dump({"issuers": [{"iss": "https://ehr.example.org", "jwks": {"keys": [jwk]}}]}))
    service = live_service(now=NOW, issuers_file=str(issuers))
    claims = {"iss": "https://ehr.example.org", "aud": f"{service.url}/cds-services/pacing-review",
              "exp": int(time.time()) + 300, "iat": int(time.time()), "jti": "chart-1"}
    signed = jwt.encode(claims, key, algorithm="ES384", headers={"kid": "k1", "typ": "JWT"})
    assert http.get(f"{service.url}/cds-services").status_code == 401
    [card] = cards_for(service, http, "progress-walking", Authorization=f"Bearer {signed}")
    assert http.get(card["links"][0]["url"]).status_code == 200
    assert http.get(card["links"][1]["url"]).status_code == 200


def test_another_instance_on_the_same_postgresql_serves_the_chart(live_service: Start, http: httpx.Client,
                                                                   postgres_server: PostgresServer) -> None:
    database = postgres_server.database("charts")
    first, second = live_service(now=NOW, database_url=database), live_service(now=NOW, database_url=database)
    [card] = cards_for(first, http, "step-back-flare")
    page = http.get(local(card["links"][0]["url"], second))
    assert page.status_code == 200
    assert "Step back: from 25 min x 4/week to 20 min x 4/week" in page.text


def _unknown_placeholder(texts: dict[str, Any]) -> None:
    texts["plan"]["this_week"]["progress"]["minutes"] = ["Walk {miles} miles"]


def _missing_code(texts: dict[str, Any]) -> None:
    del texts["plan"]["this_week"]["step-back"]


@pytest.mark.slow  # runs a command
@pytest.mark.parametrize("edit, problem", [(_unknown_placeholder, "miles"), (_missing_code, "no text for step-back")])
def test_a_broken_plan_text_stops_rules_check(edit: Callable[[dict[str, Any]], None], problem: str,
                                              tmp_path: Path) -> None:
    import shutil
    import subprocess
    import sys

    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", rules)
    english = rules / "patient-text" / "en.yaml"
    texts = yaml.safe_load(english.read_text())
    edit(texts)
    english.write_text(yaml.safe_dump(texts, allow_unicode=True))
    result = subprocess.run([str(Path(sys.executable).parent / "pacing-cds"), "rules", "check"], capture_output=True,
                            text=True, timeout=120, env={"PATH": "/usr/bin:/bin", "PACING_CDS_RULES_DIR": str(rules)})
    assert result.returncode == 1
    assert "patient-text/en.yaml" in result.stderr and problem in result.stderr


def test_the_plan_shows_a_proposal_until_the_card_is_accepted(chart_service: LiveService, http: httpx.Client) -> None:
    """Before the clinician accepts the card the plan keeps the agreed dose and calls the new one a proposal; once
    the EHR reports the card accepted (CDS Hooks feedback), the proposal is the plan."""
    service = chart_service
    [card] = cards_for(service, http, "progress-walking")
    plan_url = local(card["links"][1]["url"], service)
    before = http.get(plan_url).text
    assert "Keep to 20 minutes, 3 times a week until you agree the next step." in before
    assert "Your care team suggests 22 minutes, 3 times a week. This is a proposal" in before
    assert "agreed with your clinician" not in before
    feedback = {"feedback": [{"card": card["uuid"], "outcome": "accepted",
                              "acceptedSuggestions": [{"id": card["suggestions"][0]["uuid"]}],
                              "outcomeTimestamp": "2026-11-20T09:04:00Z"}]}
    assert http.post(f"{service.url}/cds-services/pacing-review/feedback", json=feedback).status_code == 200
    after = http.get(plan_url).text
    assert "Your new plan, agreed with your clinician, is 22 minutes, 3 times a week." in after
    assert "Keep to 22 minutes, 3 times a week until you agree the next step." in after
    assert "This is a proposal" not in after
