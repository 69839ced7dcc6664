"""The invariants of silent mode, on facts Hypothesis generates from the scenarios of rules/:
- a rule in pilot never changes the live answer: the live findings are those of the rules without it;
- what it would have said is what it says once live: its silent findings are its findings with every rule live."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cds.engine import Fired, Knowledge, RuleEngine, RuleError, load_knowledge
from tests.conftest import ROOT
from tests.support.facts import BASE, facts

NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
# Rules put in pilot together: a dose rule low in precedence, a red flag, a dose rule with a pattern, an order rule.
PILOTS = ({"progress"}, {"red-flag-cardiac"}, {"hold", "boom-bust"}, {"order-dose-jump"})


def _edit_rules(source: Path, target: Path, rule_ids: set[str], how: str) -> None:
    """A copy of rules/ with these rules silent (how == "silent") or removed, with their scenarios."""
    shutil.copytree(source, target)
    if how != "silent":  # what the scenarios expect after precedence may name a code no rule concludes any more
        for path in target.glob("*/scenarios.yaml"):
            document = yaml.safe_load(path.read_text())
            for scenario in document["scenarios"]:
                scenario.pop("expect", None)
            path.write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True))
    for path in sorted(target.glob("*/rule.yaml")):
        document = yaml.safe_load(path.read_text())
        mine = [r for r in document["rules"] if r["id"] in rule_ids]
        if not mine:
            continue
        if how == "silent":
            for rule in mine:
                rule["mode"] = "silent"
        else:
            document["rules"] = [r for r in document["rules"] if r["id"] not in rule_ids]
            scenarios = path.parent / "scenarios.yaml"
            if scenarios.exists():
                kept = yaml.safe_load(scenarios.read_text())
                kept["scenarios"] = [s for s in kept["scenarios"] if s["rule"] not in rule_ids]
                scenarios.write_text(yaml.safe_dump(kept, sort_keys=False, allow_unicode=True))
            if not document["rules"]:
                shutil.rmtree(path.parent)
                continue
        path.write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True))


@pytest.fixture(scope="module")
def engines(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[frozenset[str], tuple[RuleEngine, ...]]]:
    """Per pilot: (the rules with it silent, without it, with it silent but answering as live)."""
    built = {}
    for pilot in PILOTS:
        folder = tmp_path_factory.mktemp("pilot")
        _edit_rules(ROOT / "rules", folder / "silent", pilot, "silent")
        _edit_rules(ROOT / "rules", folder / "removed", pilot, "removed")
        silent = load_knowledge(folder / "silent")
        built[frozenset(pilot)] = (RuleEngine(silent), RuleEngine(_without(folder / "removed")),
                                   RuleEngine(silent, silent_as_live=True))
    yield built


def _without(rules: Path) -> Knowledge:
    """The rules of a copy with rules removed: a parameter only they used is kept, used by nothing that fires."""
    try:
        return load_knowledge(rules)
    except RuleError as exc:
        orphans = [p.split()[1].rstrip(":") for p in exc.problems if "says used_by rules, but no rule uses it" in p]
        if not orphans or len(orphans) != len(exc.problems):
            raise
    path = rules / "parameters.yaml"
    document = yaml.safe_load(path.read_text())
    for name in orphans:
        document["parameters"][name]["used_by"] = ["reports"]
    path.write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True))
    return load_knowledge(rules)


def _said(findings: tuple[Fired, ...] | list[Fired]) -> list[tuple[str, str, str | None, str]]:
    return [(f.rule_id, f.code, f.subject, f.outcome) for f in findings]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(given_facts=facts(), pilot=st.sampled_from(PILOTS), service=st.sampled_from(sorted(BASE.services)))
def test_a_rule_in_pilot_never_changes_the_live_answer_and_says_what_it_would_live(
        engines: dict[frozenset[str], tuple[RuleEngine, ...]], given_facts: list[dict[str, Any]], pilot: set[str],
        service: str) -> None:
    silent, removed, as_live = engines[frozenset(pilot)]
    quiet = silent.evaluate(service, given_facts, NOW)
    assert _said(quiet.findings) == _said(removed.evaluate(service, given_facts, NOW).findings)
    live = as_live.evaluate(service, given_facts, NOW)
    assert _said(quiet.silent) == _said([f for f in live.findings if f.rule_id in pilot])
    assert not live.silent and all(f.rule_id not in pilot for f in quiet.findings)


def test_every_pilot_would_have_said_something_on_the_scenarios(
        engines: dict[frozenset[str], tuple[RuleEngine, ...]]) -> None:
    """The generated cases start from scenarios on which each pilot fires, and its silence then hides a finding."""
    for pilot in PILOTS:
        silent, _, as_live = engines[frozenset(pilot)]
        hidden = 0
        for _, scenario in BASE.scenarios:
            for service in sorted(BASE.services):
                quiet = silent.evaluate(service, scenario.given, NOW)
                if quiet.silent:
                    hidden += 1
                    assert _said(quiet.findings) != _said(as_live.evaluate(service, scenario.given, NOW).findings)
        assert hidden, f"no scenario makes {sorted(pilot)} fire"
