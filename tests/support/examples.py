"""The end-to-end examples of fhir_examples/<name>/ with the rules that own them, run in-process by the one call
path (cds/knowledge/examples.py reads them, cds/services/examples.py answers them, as `pacing-cds rules test`
does)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cds.engine import RuleEngine
from cds.knowledge import load_knowledge
from cds.knowledge.examples import EXAMPLES_DIR as EXAMPLES_FOLDER
from cds.knowledge.examples import VERSION_MARK, Example
from cds.services.examples import BASE_URL, answer_example
from cds.services.pipeline import Outcome

__all__ = ["BASE_URL", "BY_NAME", "EXAMPLES", "EXAMPLES_DIR", "RULES", "SCENARIOS", "VERSION_MARK", "Example",
           "evaluate_output", "example", "example_path", "recorded", "run_example"]

RULES = Path(__file__).resolve().parents[2] / "rules"
EXAMPLES_DIR = RULES.parent / EXAMPLES_FOLDER

EXAMPLES = load_knowledge(RULES).examples()  # each with the rules that name it in their examples:
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
    return answer_example(BY_NAME[name], engine, change=change)
