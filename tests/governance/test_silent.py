"""Silent mode end to end: a rule in pilot, and a service in silent mode, on a real `pacing-cds serve` over HTTP;
what the audit keeps, the firing report and the metrics."""

from __future__ import annotations

import csv
import io
import json
import os
import sqlite3
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import ROOT, VENV_BIN, LiveService
from tests.support.examples import BY_NAME
from tests.test_metrics import scrape, value

Start = Callable[..., LiveService]
PROGRESS = json.loads((ROOT / "fhir_examples/progress-walking/request.json").read_text())
# What the service answers to it with every rule live, as of the day the test data are written for (the recorded
# answer, fhir_examples/progress-walking/response.json, which the golden tests hold the service to).
SHOWN_LIVE = BY_NAME["progress-walking"].response("")["cards"]


def silence_rule(rules: Path, folder: str, rule_id: str) -> None:
    """Put one rule of a copy of rules/ in silent mode."""
    path = rules / folder / "rule.yaml"
    document = yaml.safe_load(path.read_text())
    for rule in document["rules"]:
        if rule["id"] == rule_id:
            rule["mode"] = "silent"
    path.write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True))


def call(service: LiveService, body: dict[str, Any]) -> list[dict[str, Any]]:
    response = httpx.post(f"{service.url}/cds-services/pacing-review",
                          json={**body, "hookInstance": str(uuid.uuid4())}, timeout=30)
    assert response.status_code == 200, response.text
    cards: list[dict[str, Any]] = response.json()["cards"]
    return cards


def issued(service: LiveService) -> list[dict[str, Any]]:
    with sqlite3.connect(service.env["PACING_CDS_DATABASE_URL"].removeprefix("sqlite:///")) as db:
        db.row_factory = sqlite3.Row
        return [dict(row) for row in db.execute("SELECT * FROM issued_card ORDER BY issued_at")]


def firing_csv(service: LiveService, *args: str) -> list[dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PACING_CDS_")}
    env.update({k: v for k, v in service.env.items() if k.startswith("PACING_CDS_")})
    done = subprocess.run([str(VENV_BIN / "pacing-cds"), "report", "firing", "--format", "csv", *args], env=env,
                          capture_output=True, text=True, timeout=120, check=True)
    return list(csv.DictReader(io.StringIO(done.stdout)))


def test_a_rule_in_pilot_is_audited_and_counted_not_returned(live_service: Start, rules_copy: Path) -> None:
    assert [c["source"]["topic"]["code"] for c in SHOWN_LIVE][:1] == ["progress"]
    silence_rule(rules_copy, "progress", "progress")
    service = live_service(rules_dir=str(rules_copy), database_url=f"sqlite:///{rules_copy.parent / 'pilot.db'}")

    cards = [call(service, PROGRESS) for _ in range(3)]
    for answer in cards:
        # The rule in pilot changes nothing the clinician sees, but the dose card it would have outranked.
        assert "progress" not in [c["source"]["topic"]["code"] for c in answer]
    rows = issued(service)
    silent = [r for r in rows if r["mode"] == "silent"]
    assert len(silent) == 3 and {r["rule_id"] for r in silent} == {"progress"}
    assert {r["rule_version"] for r in silent} == {"0.2.0"}
    would_have = json.loads(silent[0]["card"])
    assert would_have["summary"] == SHOWN_LIVE[0]["summary"]  # what it would have said, word for word
    assert {r["patient_id"] for r in silent} == {PROGRESS["context"]["patientId"]}
    shown = [r for r in rows if r["mode"] == "shown"]
    assert len(shown) == sum(len(answer) for answer in cards) and all(r["rule_id"] for r in shown)

    report = {(r["service"], r["rule"]): r for r in firing_csv(service)}
    progress = report[("pacing-review", "progress")]
    assert (progress["shown"], progress["silent"], progress["patients"], progress["evaluations"]) == ("0", "3", "1",
                                                                                                      "3")
    assert progress["day"] == silent[0]["issued_at"][:10]
    for row in report.values():
        if row["rule"] != "progress":
            assert row["silent"] == "0" and int(row["shown"]) >= 1
    later = firing_csv(service, "--since", "2999-01-01")
    assert later == []

    with httpx.Client() as http:
        samples = scrape(http, f"{service.url}/metrics")
        page = http.get(f"{service.url}/rules").text
    pilot = page[page.index('id="progress"'):]
    assert "Silent (in pilot)" in pilot[:pilot.index("</section>")]
    assert page.count("Silent (in pilot)") == 1
    assert value(samples, "pacing_cds_cards_total", topic="progress", indicator="info", mode="silent") == 3
    assert value(samples, "pacing_cds_cards_total", topic="progress", indicator="info", mode="shown") == 0


def test_a_service_in_silent_mode_returns_no_card_and_audits_every_one(live_service: Start, tmp_path: Path) -> None:
    service = live_service(silent="pacing-review")
    assert call(service, PROGRESS) == []
    rows = issued(service)
    assert rows and {r["mode"] for r in rows} == {"silent"} and "progress" in {r["rule_id"] for r in rows}
    assert all(json.loads(r["card"])["summary"] for r in rows)
    with sqlite3.connect(service.env["PACING_CDS_DATABASE_URL"].removeprefix("sqlite:///")) as db:
        (topics, message), = db.execute("SELECT card_topics, message FROM audit_event")
    assert json.loads(topics) == [] and "silent mode" in message


@pytest.mark.slow  # runs a command
def test_a_silent_setting_naming_no_service_stops_the_start(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PACING_CDS_")}
    env.update({"PACING_CDS_SILENT": "pacing-reveiw", "PACING_CDS_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"})
    done = subprocess.run([str(VENV_BIN / "pacing-cds"), "serve"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2
    assert "PACING_CDS_SILENT names no service of the rules: pacing-reveiw" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.slow  # runs a command
def test_evaluate_prints_what_a_rule_in_pilot_would_have_said(rules_copy: Path) -> None:
    silence_rule(rules_copy, "progress", "progress")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PACING_CDS_")}
    env["PACING_CDS_RULES_DIR"] = str(rules_copy)
    done = subprocess.run([str(VENV_BIN / "pacing-cds"), "evaluate", str(ROOT / "fhir_examples/progress-walking/"
                                                                         "request.json"), "--now", "2026-11-20"],
                          env=env, capture_output=True, text=True, timeout=120, check=True)
    shown, _, silent = done.stdout.partition("Silent (evaluated and audited, not returned)")
    assert "progress:" not in shown.split("Trace")[0]
    assert "[info] progress: Progress" in silent
    assert "fired  progress v0.2.0 -> progress: silent (in pilot)" in silent
