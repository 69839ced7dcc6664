"""The end-to-end examples of fhir_examples/<name>/, run in-process by the one call path."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cds.engine import RuleEngine
from cds.fhir.client import FhirClient
from cds.knowledge import example_dirs
from cds.services import services_of
from cds.services.pipeline import Outcome, answer

RULES = Path(__file__).resolve().parents[2] / "rules"
EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "fhir_examples"
VERSION_MARK = "<rule set version>"
BASE_URL = "http://127.0.0.1:8080"  # where the examples' answers say the service is (the default of `make run`)


@dataclass(frozen=True)
class Example:
    """request.json (the call), expected.json (its intent: service, the recommendation folder of rules/ that owns it,
    now, codes, dose), response.json (the answer recorded after review)."""

    folder: Path

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def recommendation(self) -> str:
        return str(self.expected["recommendation"])

    @property
    def request(self) -> dict[str, Any]:
        return json.loads((self.folder / "request.json").read_text())

    @property
    def expected(self) -> dict[str, Any]:
        return json.loads((self.folder / "expected.json").read_text())

    def response(self, version: str) -> dict[str, Any]:
        return json.loads((self.folder / "response.json").read_text().replace(VERSION_MARK, version))

    def evaluate_text(self, version: str) -> str:
        """What `pacing-cds evaluate` printed for it when the answer was recorded."""
        return (self.folder / "evaluate.txt").read_text().replace(VERSION_MARK, version)


EXAMPLES = [Example(folder) for folder in example_dirs(EXAMPLES_DIR)]
BY_NAME = {e.name: e for e in EXAMPLES}
SCENARIOS = [e.name for e in EXAMPLES]


def example(name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    return BY_NAME[name].request, BY_NAME[name].expected


def example_path(name: str) -> Path:
    return BY_NAME[name].folder / "request.json"


def recorded(response: dict[str, Any], version: str) -> str:
    """An answer as response.json keeps it: indented, the rule set version replaced by a marker."""
    return json.dumps(response, indent=1, ensure_ascii=False).replace(version, VERSION_MARK) + "\n"


def evaluate_output(name: str) -> str:
    """`pacing-cds evaluate` of an example as of its `now`, in this process."""
    import io

    from cds.cli import evaluate
    from cds.settings import load_settings

    out = io.StringIO()
    settings = load_settings(rules_dir=RULES, public_base_url=BASE_URL)
    code = evaluate(settings, str(example_path(name)), BY_NAME[name].expected["now"], None, out)
    assert code == 0, f"evaluate {name} exited {code}"
    return out.getvalue()


def run_example(name: str, engine: RuleEngine, change: Callable[[dict[str, Any]], Any] | None = None) -> Outcome:
    """Answer an example as of its expected.json's `now`; `change` may edit the request first."""
    body, expected = example(name)
    if change:
        change(body)
    service = services_of(engine.knowledge)[expected["service"]]
    now = datetime.fromisoformat(expected["now"].replace("Z", "+00:00"))
    fhir = FhirClient(3.0, 10)
    try:
        return answer(service, body, engine, fhir, now, base_url=BASE_URL).outcome
    finally:
        fhir.close()
