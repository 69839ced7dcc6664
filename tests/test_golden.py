"""Golden examples: every fhir_examples/<name>, owned by the rules that name it in their examples:, gives its
intended recommendations and dose and exactly its recorded answer, in-process and over HTTP, and the two answers are
the same to the byte."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from cds.engine import Knowledge
from cds.hooks.models import Card, CdsResponse
from cds.services.examples import differences
from tests.conftest import ROOT, LiveService
from tests.support.examples import BASE_URL, EXAMPLES, EXAMPLES_DIR, Example, evaluate_output, run_example

NOW = "2026-11-20T09:00:00Z"


def owned(example: Example) -> str:
    """A test id: the rules that own the example, then its name."""
    return f"{'+'.join(example.owners)}/{example.name}"


def in_process(name: str, engine: Any) -> dict[str, Any]:
    return run_example(name, engine).response.to_json()


def concluded_codes(knowledge: Knowledge) -> set[str]:
    return {c.rule.conclude.code for c in knowledge.rules}


def test_every_recommendation_has_an_example_that_makes_it_and_every_example_a_rule(knowledge: Knowledge) -> None:
    made = {code for e in EXAMPLES for code in e.intent.codes}
    assert made == concluded_codes(knowledge)
    assert knowledge.examples_dir == EXAMPLES_DIR
    assert [e.name for e in EXAMPLES] == sorted(p.parent.name for p in EXAMPLES_DIR.glob("*/request.json"))
    for example in EXAMPLES:
        assert example.owners, f"{example.name}: no rule names it in its examples:"
        for rule_id in example.owners:
            assert example.intent.service in knowledge.rule(rule_id).services, (example.name, rule_id)


@pytest.mark.parametrize("example", EXAMPLES, ids=owned)
def test_example_in_process(example: Example, knowledge: Knowledge, engine: Any) -> None:
    outcome = run_example(example.name, engine)
    assert differences(example, outcome.response.cards) == [], example.intent.shows
    answer = outcome.response.to_json()
    assert answer == example.response(knowledge.version), "the answer differs from the recorded response.json"
    for card in answer["cards"]:
        Card.model_validate(card)
        assert len(card["summary"]) < 140
        assert knowledge.version in card["detail"] and "Evidence:" in card["detail"]
    assert CdsResponse.model_validate(answer).to_json() == answer
    assert in_process(example.name, engine) == answer, "the same request gives the same response"


@pytest.mark.parametrize("example", EXAMPLES, ids=owned)
def test_evaluate_prints_what_was_recorded(example: Example, knowledge: Knowledge) -> None:
    assert evaluate_output(example.name) == example.evaluate_text(knowledge.version)


def test_examples_over_http_equal_in_process(live_service: Callable[..., LiveService], http: httpx.Client,
                                             knowledge: Knowledge, engine: Any) -> None:
    service = live_service(now=NOW, public_base_url=BASE_URL)
    seen: set[str] = set()
    for example in EXAMPLES:
        response = http.post(f"{service.url}/cds-services/{example.expected['service']}", json=example.request)
        assert response.status_code == 200, (example.name, response.text)
        answer = response.json()
        for card in answer["cards"]:
            card.pop("links", None)  # the HTTP edge adds chart links with random tokens (tests/charts checks them)
        assert answer == in_process(example.name, engine), example.name
        seen.update(c["source"]["topic"]["code"] for c in answer["cards"])
    assert seen == concluded_codes(knowledge), "every recommendation code is produced over HTTP"


@pytest.mark.slow  # runs a command
def test_example_requests_are_what_the_generator_writes(tmp_path: Path) -> None:
    copy = tmp_path / "repo"
    (copy / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "generate_examples.py", copy / "scripts" / "generate_examples.py")
    subprocess.run([sys.executable, str(copy / "scripts" / "generate_examples.py")], check=True,
                   capture_output=True, timeout=120)
    written = sorted(p.relative_to(copy / "fhir_examples") for p in (copy / "fhir_examples").rglob("request.json"))
    assert written == sorted(p.relative_to(EXAMPLES_DIR) for p in EXAMPLES_DIR.rglob("request.json"))
    for relative in written:
        assert (copy / "fhir_examples" / relative).read_text() == (EXAMPLES_DIR / relative).read_text(), relative
