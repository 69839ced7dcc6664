"""The README's settings table and walk-through stay true."""

from __future__ import annotations

import json
import re
from pathlib import Path

from cds.settings import settings_table
from tests.support.examples import BY_NAME, example_path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_settings_table_matches_the_settings() -> None:
    rows = re.findall(r"^\| `(PACING_CDS_[A-Z_]+)` \| (.+?) \| (.+?) \|$", README, re.MULTILINE)
    documented = {name: (default.strip("`"), meaning) for name, default, meaning in rows}
    expected = {name: (default or "(unset)", meaning) for name, default, meaning in settings_table()}
    assert documented == expected


def test_walk_through_requests_give_the_answers_shown(tmp_path: Path) -> None:
    from cds import create_app
    from cds.settings import load_settings

    app = create_app(load_settings(database_url=f"sqlite:///{tmp_path / 'r.db'}", now="2026-11-20T09:00:00Z"))
    client = app.test_client()
    request = json.loads(example_path("progress-walking").read_text())
    version = app.extensions["pacing_cds"].engine.knowledge.version
    [summary] = [c["summary"] for c in BY_NAME["progress-walking"].response(version)["cards"]]
    assert f"progress: {summary}" in README  # the recorded answer; the golden tests hold the service to it
    app_now = client.application.extensions["pacing_cds"].settings.now
    assert app_now is not None and app_now.isoformat().startswith("2026-11-20T09:00")
    cards = client.post("/cds-services/pacing-review", json=request).get_json()["cards"]
    assert [c["source"]["topic"]["code"] for c in cards] == ["progress"]
    bare = json.loads(re.search(r"--data '(\{\"hook\".+?)'", README).group(1))  # type: ignore[union-attr]
    shown = json.loads(re.search(r"^(\{\"resourceType\":\"OperationOutcome\".+)$", README,
                                 re.MULTILINE).group(1))  # type: ignore[union-attr]
    response = client.post("/cds-services/pacing-review", json=bare)
    assert response.status_code == 412
    assert response.get_json() == shown
    feedback = json.loads((ROOT / "docs/examples/feedback.json").read_text())
    answer = client.post("/cds-services/pacing-review/feedback", json=feedback)
    assert answer.get_json() == {"received": 1, "stored": 1}
    app.extensions["pacing_cds"].close()


def test_evaluate_output_shown_is_what_the_command_printed_when_recorded() -> None:
    """The README shows the recorded `pacing-cds evaluate` output of the example; the golden tests check that the
    command still prints it."""
    command = "$ .venv/bin/pacing-cds evaluate fhir_examples/progress-walking/request.json " \
              "--now 2026-11-20T09:00:00Z\n"
    shown = README.split(command, 1)[1].split("\n```", 1)[0]
    version = re.search(r"^Pacing CDS rules (\S+)$", shown, re.MULTILINE).group(1)  # type: ignore[union-attr]
    assert shown.rstrip() == BY_NAME["progress-walking"].evaluate_text(version).rstrip()


def test_integration_guide_covers_every_setting() -> None:
    guide = (ROOT / "docs/integration.md").read_text()
    missing = [name for name, _, _ in settings_table() if f"`{name}`" not in guide]
    assert missing == []


def test_the_examples_table_is_generated_from_the_examples() -> None:
    """Every example with the rules that own it, as scripts/update_readme.py writes the table from the rules' examples:
    and the expected.json files."""
    from scripts.update_readme import examples_table

    assert examples_table() in README
