"""The `pacing-cds` command: `rules check` and `rules test` as an author runs them (the rules and the examples they
own), the benchmark still runs, and `evaluate REQUEST.json --now DATE` prints cards and trace in a terminal."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cds.engine import Knowledge, RuleEngine
from tests.support.examples import example_path, run_example
from tests.support.rules import edit, set_parameter

pytestmark = pytest.mark.slow  # every test runs the command

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str, rules: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin"}
    if rules is not None:
        env["PACING_CDS_RULES_DIR"] = str(rules)
    return subprocess.run([str(BIN / "pacing-cds"), *args], env=env, capture_output=True, text=True, timeout=120)


def test_check_passes_on_the_project_rules(knowledge: Knowledge) -> None:
    result = cli("rules", "check")
    assert result.returncode == 0, result.stderr
    assert f"{len(knowledge.rules)} rules" in result.stdout and ": OK" in result.stdout
    assert f" {len(knowledge.examples())} examples, " in result.stdout


def test_check_fails_on_an_example_no_rule_owns_or_a_name_that_is_no_example(rules_with_examples: Path) -> None:
    edit(rules_with_examples / "data-gap/rule.yaml", "  examples:\n  - data-gap\n", "  examples:\n  - data-hole\n")
    result = cli("rules", "check", rules=rules_with_examples)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"pacing-cds: 2 problem(s) in {rules_with_examples}:",
        "  fhir_examples/data-gap: no rule owns this example: name it in the examples: of the rule whose card it "
        "shows (rules/<code>/rule.yaml)",
        "  data-gap/rule.yaml rule data-gap: examples: 'data-hole' is not an example "
        "(fhir_examples/data-hole/request.json does not exist)"]
    assert result.stdout == ""


def test_without_examples_beside_the_rules_check_and_test_say_so(rules_copy: Path) -> None:
    note = f"no fhir_examples folder beside {rules_copy} (an installed package has none)"
    check = cli("rules", "check", rules=rules_copy)
    assert check.returncode == 0, check.stderr
    *notes, verdict = check.stdout.splitlines()
    assert f"{note}: the rules' examples are not checked" in notes and verdict.endswith(": OK")
    assert all("not checked" in line for line in notes), notes  # what it left out, and nothing else
    scenarios = cli("rules", "test", rules=rules_copy)
    assert scenarios.returncode == 0, scenarios.stdout + scenarios.stderr
    assert scenarios.stdout.splitlines()[-2] == f"{note}: no example run"
    assert "example" not in "".join(scenarios.stdout.splitlines()[:-2])


def test_check_lists_every_problem_and_fails(rules_copy: Path) -> None:
    edit(rules_copy / "precaution/rule.yaml", "{temperature_max: {param: fever_celsius}}", "{temperature_max: 38}")
    set_parameter(rules_copy, "progression_step", 0.5)
    result = cli("rules", "check", rules=rules_copy)
    assert result.returncode == 1
    assert "problem(s) in" in result.stderr
    assert "literal number 38" in result.stderr and "outside its allowed range" in result.stderr
    assert "Traceback" not in result.stderr


def test_test_prints_a_line_per_rule_and_the_count(knowledge: Knowledge) -> None:
    result = cli("rules", "test")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert sum(1 for line in lines if line.startswith("ok ")) == len(knowledge.rules)
    for compiled, line in zip(knowledge.rules, lines, strict=False):
        owned = len(compiled.rule.examples)
        assert f" {compiled.rule.id} " in line
        assert (f"  {owned} example{'s' if owned > 1 else ''} passed  " if owned else "  no example  ") in line, line
    assert lines[-1] == f"{len(knowledge.scenarios) + len(knowledge.examples())} passed, 0 failed"


def test_test_fails_when_an_example_gives_other_cards(rules_with_examples: Path) -> None:
    expected = rules_with_examples.parent / "fhir_examples/goal-met/expected.json"
    edit(expected, '"goal-met"', '"progress"')
    result = cli("rules", "test", rules=rules_with_examples)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    [failed] = [line for line in lines if line.startswith("FAIL")]
    assert failed.startswith("FAIL  goal-met ") and "1 example, 1 failed" in failed
    assert lines[lines.index(failed) + 1] == \
        "      - example goal-met [pacing-review]: cards [goal-met], expected [progress]"
    assert lines[-1].endswith(" passed, 1 failed")


def test_test_fails_when_a_scenario_no_longer_holds(rules_copy: Path, knowledge: Knowledge) -> None:
    cap = knowledge.values["acwr_progression_cap"]
    set_parameter(rules_copy, "acwr_progression_cap", 1.1)  # the lowest the range allows
    edit(rules_copy / "progress/scenarios.yaml", "acwr: {param: acwr_progression_cap}}", f"acwr: {cap}}}")
    result = cli("rules", "test", rules=rules_copy)
    assert result.returncode == 1
    assert any(line.startswith("FAIL") and "progress " in line for line in result.stdout.splitlines())
    assert "'on track with the acute:chronic ratio at the cap' [pacing-review]: progress did not fire" in result.stdout
    passed = len(knowledge.scenarios) - 2
    assert result.stdout.splitlines()[-1] == f"{passed} passed, 2 failed"  # boom-bust's scenario uses 1.2 too


def test_serve_refuses_broken_rules(rules_copy: Path) -> None:
    (rules_copy / "facts.yaml").write_text("facts: [")
    result = cli("serve", rules=rules_copy)
    assert result.returncode == 2
    assert "facts.yaml line" in result.stderr


def test_engine_benchmark_prints_its_table() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "engine.py"), "--n", "300"], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ")]
    assert rows[1].startswith("| baseline: empty session") and "1.00 x baseline" in rows[1]
    cases = [row.split("|")[1].strip() for row in rows[2:]]
    assert {"on-track patient -> progress", "on-track, progress in pilot", "mixed, 8 threads"} <= set(cases)
    assert all("x baseline" in row or "x 1 thread" in row for row in rows[2:])


def evaluate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "pacing-cds"), "evaluate", *args], capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin"})


def test_evaluate_prints_cards_and_trace(engine: RuleEngine) -> None:
    result = evaluate(str(example_path("step-back-flare")), "--now", "2026-11-20T09:00:00Z")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "pacing-review (patient-view) for Patient/step-back-flare as of 2026-11-20T09:00:00+00:00" in out
    [card] = run_example("step-back-flare", engine).response.cards  # the same call path, in this process
    assert f"[warning] step-back: {card.summary}" in out
    assert f"suggestion: {card.suggestions[0].label} (create ServiceRequest)" in out  # type: ignore[index]
    assert '    fact   {"t": "patient", "has_prescription": true' in out
    assert "    fired  step-back v0.2.0 -> step-back: selected" in out
    assert "    data   pain: " in out


def test_evaluate_traces_each_reading_set_aside() -> None:
    result = evaluate(str(example_path("pounds-and-fahrenheit")), "--now", "2026-11-20T09:00:00Z")
    assert result.returncode == 0, result.stderr
    skipped = [line for line in result.stdout.splitlines() if line.startswith("    skipped Observation/")]
    assert any(line.endswith(": unit 'K' not understood for a temperature") for line in skipped), skipped


def test_evaluate_with_a_date_only_and_no_cards() -> None:
    result = evaluate(str(example_path("order-fits")), "--now", "2026-11-20")
    assert result.returncode == 0, result.stderr
    assert "No cards: the order fits the pacing plan: ServiceRequest/order-fits-draft (22 min x 3/week)." \
        in result.stdout, "the trace says why there is no card"


def test_evaluate_refuses_what_it_cannot_read(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    result = evaluate(str(bad))
    assert result.returncode == 2 and "cannot read" in result.stderr and "Traceback" not in result.stderr
    missing = evaluate(str(tmp_path / "absent.json"))
    assert missing.returncode == 2
