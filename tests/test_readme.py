"""The README's settings table and walk-through stay true."""

from __future__ import annotations

import json
import re
from pathlib import Path

from flask.testing import FlaskClient

from cds.settings import settings_table

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_settings_table_matches_the_settings() -> None:
    rows = re.findall(r"^\| `(PACING_CDS_[A-Z_]+)` \| (.+?) \| (.+?) \|$", README, re.MULTILINE)
    documented = {name: (default.strip("`"), meaning) for name, default, meaning in rows}
    expected = {name: (default or "(unset)", meaning) for name, default, meaning in settings_table()}
    assert documented == expected


def test_walk_through_requests_give_the_answers_shown(client: FlaskClient) -> None:
    request = json.loads((ROOT / "docs/examples/patient-view-request.json").read_text())
    assert client.post("/cds-services/pacing-review", json=request).get_json() == {"cards": []}
    bare = json.loads(re.search(r"--data '(\{\"hook\".+?)'", README).group(1))  # type: ignore[union-attr]
    shown = json.loads(re.search(r"^(\{\"resourceType\":\"OperationOutcome\".+)$", README,
                                 re.MULTILINE).group(1))  # type: ignore[union-attr]
    response = client.post("/cds-services/pacing-review", json=bare)
    assert response.status_code == 412
    assert response.get_json() == shown
    feedback = json.loads((ROOT / "docs/examples/feedback.json").read_text())
    answer = client.post("/cds-services/pacing-review/feedback", json=feedback)
    assert answer.get_json() == {"received": 1, "stored": 1}
