"""`pacing-cds rules check` and `rules test` as an author runs them, and the benchmark still runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.engine.conftest import edit

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str, rules: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin"}
    if rules is not None:
        env["PACING_CDS_RULES_DIR"] = str(rules)
    return subprocess.run([str(BIN / "pacing-cds"), *args], env=env, capture_output=True, text=True, timeout=120)


def test_check_passes_on_the_project_rules() -> None:
    result = cli("rules", "check")
    assert result.returncode == 0, result.stderr
    assert "17 rules" in result.stdout and ": OK" in result.stdout


def test_check_lists_every_problem_and_fails(rules_copy: Path) -> None:
    edit(rules_copy / "red-flags.yaml", "{temperature_max: {param: fever_celsius}}", "{temperature_max: 38}")
    edit(rules_copy / "parameters.yaml", "value: 0.10\n", "value: 0.5\n")
    result = cli("rules", "check", rules=rules_copy)
    assert result.returncode == 1
    assert "problem(s) in" in result.stderr
    assert "literal number 38" in result.stderr and "outside its allowed range" in result.stderr
    assert "Traceback" not in result.stderr


def test_test_prints_a_line_per_rule_and_the_count() -> None:
    result = cli("rules", "test")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert sum(1 for line in lines if line.startswith("ok ")) == 17
    assert lines[-1].endswith("passed, 0 failed")


def test_test_fails_when_a_scenario_no_longer_holds(rules_copy: Path) -> None:
    edit(rules_copy / "parameters.yaml", "  acwr_progression_cap:\n    value: 1.3", "  acwr_progression_cap:\n    value: 1.1")
    edit(rules_copy / "pacing-review.scenarios.yaml", "acwr: {param: acwr_progression_cap}", "acwr: 1.3")
    result = cli("rules", "test", rules=rules_copy)
    assert result.returncode == 1
    assert any(line.startswith("FAIL") and "progress " in line for line in result.stdout.splitlines())
    assert "'on track with the acute:chronic ratio at the cap' [pacing-review]: progress did not fire" in result.stdout
    assert result.stdout.splitlines()[-1] == "43 passed, 2 failed"  # boom-bust's scenario uses 1.2 too


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
    assert len(rows) == 9
