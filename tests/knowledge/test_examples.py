"""The rules own the examples: each name in a rule's examples: is a folder of fhir_examples/ beside the rules, and
every example there is named by a rule that serves its service. Checked where that folder is, left out where not."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cds.engine import Knowledge, RuleEngine, RuleError, load_knowledge
from cds.knowledge.examples import EXAMPLES_DIR
from cds.services.examples import run_examples
from tests.support.rules import SERVICE_IDS, edit


def problems(rules_dir: Path) -> list[str]:
    with pytest.raises(RuleError) as raised:
        load_knowledge(rules_dir, SERVICE_IDS)
    return raised.value.problems


def rewrite(path: Path, **changes: object) -> None:
    """Change fields of an example's expected.json."""
    expected = json.loads(path.read_text())
    expected.update(changes)
    path.write_text(json.dumps(expected, indent=1) + "\n")


def test_the_project_examples_are_each_owned(knowledge: Knowledge) -> None:
    assert knowledge.examples_dir is not None and knowledge.examples_dir.name == EXAMPLES_DIR
    examples = knowledge.examples()
    assert examples and all(e.owners for e in examples)
    assert {name for c in knowledge.rules for name in c.rule.examples} == {e.name for e in examples}
    by_name = {e.name: e for e in examples}
    assert by_name["progress-walking"].owners == ("progress",)
    assert by_name["order-fits"].owners == ("order-dose-jump",), "an example may show a rule's card held back"


def test_a_rule_naming_an_example_that_does_not_exist_is_refused(rules_with_examples: Path) -> None:
    edit(rules_with_examples / "goal-met/rule.yaml", "  - goal-met\n", "  - goal-met\n  - goal-exceeded\n")
    assert problems(rules_with_examples) == [
        "goal-met/rule.yaml rule goal-met: examples: 'goal-exceeded' is not an example "
        "(fhir_examples/goal-exceeded/request.json does not exist)"]


def test_an_example_no_rule_owns_is_refused(rules_with_examples: Path) -> None:
    examples = rules_with_examples.parent / EXAMPLES_DIR
    shutil.copytree(examples / "goal-met", examples / "goal-met-again")
    edit(rules_with_examples / "data-gap/rule.yaml", "  examples:\n  - data-gap\n", "  examples: []\n")
    assert problems(rules_with_examples) == [
        "fhir_examples/data-gap: no rule owns this example: name it in the examples: of the rule whose card it shows "
        "(rules/<code>/rule.yaml)",
        "fhir_examples/goal-met-again: no rule owns this example: name it in the examples: of the rule whose card it "
        "shows (rules/<code>/rule.yaml)"]


def test_an_example_owned_by_a_rule_of_another_service_is_refused(rules_with_examples: Path) -> None:
    edit(rules_with_examples / "goal-met/rule.yaml", "  - goal-met\n", "  - goal-met\n  - order-fits\n")
    assert problems(rules_with_examples) == [
        "goal-met/rule.yaml rule goal-met: examples: 'order-fits' asks the service 'exercise-order-sign', which does "
        "not use this rule (its services: pacing-review)"]


def test_an_example_named_twice_by_a_rule_is_refused(rules_with_examples: Path) -> None:
    edit(rules_with_examples / "goal-met/rule.yaml", "  - goal-met\n", "  - goal-met\n  - goal-met\n")
    assert any("goal-met/rule.yaml rules.0.examples" in p and "more than once" in p
               for p in problems(rules_with_examples))


def test_an_expected_json_out_of_shape_is_refused(rules_with_examples: Path) -> None:
    examples = rules_with_examples.parent / EXAMPLES_DIR
    rewrite(examples / "goal-met/expected.json", recommendation="goal-met")  # the owner is the rule's to say
    rewrite(examples / "data-gap/expected.json", codes=["data-hole"])
    rewrite(examples / "start-steps/expected.json", now="next Tuesday")
    found = problems(rules_with_examples)
    assert "fhir_examples/goal-met/expected.json recommendation: Extra inputs are not permitted" in found
    assert "fhir_examples/data-gap/expected.json codes: 'data-hole' is not a recommendation code (no rule concludes " \
           "it)" in found
    assert any(p.startswith("fhir_examples/start-steps/expected.json now: ") for p in found)


def test_rules_without_examples_beside_them_load_unchecked(rules_copy: Path) -> None:
    """An installed package, or a copy of rules/ alone: the names in examples: are not looked for."""
    edit(rules_copy / "goal-met/rule.yaml", "  - goal-met\n", "  - goal-met\n  - goal-exceeded\n")
    knowledge = load_knowledge(rules_copy, SERVICE_IDS)
    assert knowledge.examples_dir is None and knowledge.examples() == []


def test_an_example_whose_cards_differ_from_its_intent_fails(rules_with_examples: Path) -> None:
    examples = rules_with_examples.parent / EXAMPLES_DIR
    rewrite(examples / "goal-met/expected.json", codes=["progress"], dose="33 min x 5/week")
    rewrite(examples / "peg-only/expected.json", says=["repeat the PEG tomorrow"], never_says=["PEG"])
    knowledge = load_knowledge(rules_with_examples)
    results = {r.example.name: r for r in run_examples(knowledge.examples(), RuleEngine(knowledge))}
    assert results["goal-met"].problems == ("cards [goal-met], expected [progress]",
                                            "dose (none), expected 33 min x 5/week")
    assert results["peg-only"].problems == ("no card says 'repeat the PEG tomorrow'", "a card says 'PEG'")
    assert [name for name, r in results.items() if not r.ok] == ["goal-met", "peg-only"]
