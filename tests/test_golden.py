"""Golden examples: every fhir_examples/<scenario> gives its expected recommendations and dose, in-process and
over HTTP, and the two answers are the same to the byte."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from cds.engine import Knowledge
from cds.hooks.models import Card, CdsResponse
from tests.conftest import LiveService
from tests.support.examples import EXAMPLES, SCENARIOS, example, run_example

NOW = "2026-11-20T09:00:00Z"
CLINICAL_CODES = {"red-flag", "data-gap", "establish-baseline", "start", "re-baseline", "step-back", "hold",
                  "goal-met", "progress", "boom-bust", "inactivity", "order-dose-jump", "order-no-baseline"}


def dose_of(cards: list[dict[str, Any]]) -> str | None:
    """The dose proposed by the first suggestion that carries one (a ServiceRequest timing or a Goal target)."""
    for card in cards:
        for suggestion in card.get("suggestions", []):
            for action in suggestion.get("actions", []):
                resource = action.get("resource", {})
                repeat = resource.get("occurrenceTiming", {}).get("repeat")
                if repeat:
                    return f"{repeat['duration']} min x {repeat['frequency']}/week"
                if resource.get("resourceType") == "Goal":
                    return f"{resource['target'][0]['detailQuantity']['value']:,} steps/day"
    return None


def in_process(name: str, knowledge: Knowledge, engine: Any) -> dict[str, Any]:
    return run_example(name, engine).response.to_json()


def test_there_are_at_least_12_scenarios_covering_every_code() -> None:
    assert len(SCENARIOS) >= 12
    covered = {code for name in SCENARIOS for code in example(name)[1]["codes"]}
    assert covered == CLINICAL_CODES


@pytest.mark.parametrize("name", SCENARIOS)
def test_example_in_process(name: str, knowledge: Knowledge, engine: Any) -> None:
    _, expected = example(name)
    answer = in_process(name, knowledge, engine)
    assert [c["source"]["topic"]["code"] for c in answer["cards"]] == expected["codes"]
    assert dose_of(answer["cards"]) == expected["dose"]
    for card in answer["cards"]:
        Card.model_validate(card)
        assert len(card["summary"]) < 140
        assert knowledge.version in card["detail"] and "Evidence:" in card["detail"]
    assert CdsResponse.model_validate(answer).to_json() == answer
    assert in_process(name, knowledge, engine) == answer, "the same request gives the same response"


def test_examples_over_http_equal_in_process(live_service: Callable[..., LiveService], http: httpx.Client,
                                             knowledge: Knowledge, engine: Any) -> None:
    service = live_service(now=NOW)
    seen: set[str] = set()
    for name in SCENARIOS:
        body, expected = example(name)
        response = http.post(f"{service.url}/cds-services/{expected['service']}", json=body)
        assert response.status_code == 200, (name, response.text)
        answer = response.json()
        for card in answer["cards"]:
            card.pop("links", None)  # the HTTP edge adds chart links with random tokens (tests/charts checks them)
        assert answer == in_process(name, knowledge, engine), name
        seen.update(c["source"]["topic"]["code"] for c in answer["cards"])
    assert seen == CLINICAL_CODES, "every recommendation code is produced over HTTP"


def test_examples_are_what_the_generator_writes(tmp_path: Path) -> None:
    import shutil
    import subprocess
    import sys

    copy = tmp_path / "fhir_examples"
    copy.mkdir()
    shutil.copy(EXAMPLES / "generate.py", copy / "generate.py")
    subprocess.run([sys.executable, str(copy / "generate.py")], check=True, capture_output=True, timeout=120)
    for name in SCENARIOS:
        for file in ("request.json", "expected.json"):
            assert (copy / name / file).read_text() == (EXAMPLES / name / file).read_text(), f"{name}/{file}"
