"""What differs between two rule sets, as the impact page names it: parameters, rules, value sets, shared files."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from cds.knowledge import load_knowledge
from cds.knowledge.diff import diff_knowledge, diff_parameters, diff_rules, diff_value_sets
from cds.knowledge.loader import CompiledRule, Knowledge
from tests.support.rules import RULES, set_parameter


@pytest.fixture(scope="module")
def rules() -> Knowledge:
    return load_knowledge(RULES)


def changed_rule(knowledge: Knowledge, rule_id: str, **update: Any) -> tuple[CompiledRule, ...]:
    """The rule set's rules with one rule's fields replaced (services apart: they are the rule file's)."""
    services = update.pop("services", None)
    return tuple(dataclasses.replace(c, rule=c.rule.model_copy(update=update),
                                     services=services or c.services) if c.rule.id == rule_id else c
                 for c in knowledge.rules)


def test_a_rule_set_differs_from_itself_in_nothing(rules: Knowledge) -> None:
    assert diff_knowledge(rules, rules).empty


def test_a_parameter_changed_names_the_value_and_any_other_field(rules: Knowledge) -> None:
    before = rules.parameters
    goal = before["goal_weekly_minutes"]
    after = {**before, "goal_weekly_minutes": goal.model_copy(update={"value": 250, "range": (150.0, 400.0)})}
    [change] = diff_parameters(before, after)
    assert (change.name, change.status, change.before, change.after) == ("goal_weekly_minutes", "changed", goal,
                                                                          after["goal_weekly_minutes"])
    assert change.what == ("value: 150 → 250", "range: [150.0,300.0] → [150.0,400.0]")


def test_parameters_added_and_removed(rules: Knowledge) -> None:
    before = dict(rules.parameters)
    after = {**before, "new_threshold": before["adherence_min"]}
    del after["adherence_min"]
    assert [(c.name, c.status) for c in diff_parameters(before, after)] == [("adherence_min", "removed"),
                                                                            ("new_threshold", "added")]


def test_a_rule_changed_says_what_changed_in_a_few_words(rules: Knowledge) -> None:
    rule = rules.rule("goal-met").rule
    summary = rule.conclude.summary + " Well done."
    after = changed_rule(rules, "goal-met", version="9.9.9", mode="silent", precedence=rule.precedence + 1,
                         conclude=rule.conclude.model_copy(update={"summary": summary, "indicator": "warning"}))
    [change] = diff_rules(rules.rules, after)
    assert (change.rule_id, change.status, change.version_before, change.version_after) == (
        "goal-met", "changed", rule.version, "9.9.9")
    assert change.what == (f"version {rule.version} → 9.9.9", "mode live → silent",
                           f"precedence {rule.precedence} → {rule.precedence + 1}",
                           f"conclude.indicator {rule.conclude.indicator} → warning", "card text: summary")


def test_a_condition_value_changed_is_named_at_its_place(rules: Knowledge) -> None:
    conditions = {"all": [{"p": {"$and": [{"t": "patient"}, {"$gte": {"adherence": {"param": "adherence_min"}}}]}}]}
    changed = {"all": [{"p": {"$and": [{"t": "patient"}, {"$gte": {"adherence": {"param": "adherence_low"}}}]}}]}
    before = changed_rule(rules, "hold", conditions=conditions)
    after = changed_rule(rules, "hold", conditions=changed)
    [change] = diff_rules(before, after)
    assert change.what == ("conditions.all[0].p.$and[1].$gte.adherence.param: adherence_min → adherence_low",)


def test_an_item_added_to_a_list_of_conditions_is_named_as_added(rules: Knowledge) -> None:
    one = {"all": [{"c": {"$or": [{"value_set": "cauda-equina"}]}}]}
    two = {"all": [{"c": {"$or": [{"value_set": "cauda-equina"}, {"value_set": "incontinence"}]}}]}
    [change] = diff_rules(changed_rule(rules, "hold", conditions=one), changed_rule(rules, "hold", conditions=two))
    assert change.what == ('conditions.all[0].c.$or: added {"value_set":"incontinence"}',)


def test_rules_added_removed_and_moved_to_other_services(rules: Knowledge) -> None:
    hold = rules.rule("hold")
    fewer = tuple(c for c in rules.rules if c.rule.id != "hold")
    assert [(c.rule_id, c.status, c.version_before) for c in diff_rules(rules.rules, fewer)] == [
        ("hold", "removed", hold.rule.version)]
    assert [(c.rule_id, c.status, c.version_after) for c in diff_rules(fewer, rules.rules)] == [
        ("hold", "added", hold.rule.version)]
    emergency = rules.rule("red-flag-emergency")
    [change] = diff_rules(rules.rules, changed_rule(rules, "red-flag-emergency", services=("pacing-review",)))
    assert change.what == (f"services {', '.join(emergency.services)} → pacing-review",)


def test_a_value_set_names_the_codes_it_lost_and_gained(rules: Knowledge) -> None:
    fracture = rules.value_sets["vertebral-fracture"]
    kept, dropped = fracture.snomed[1:], fracture.snomed[0]
    added = dropped.model_copy(update={"code": "1234567"})
    after = {**rules.value_sets, "vertebral-fracture": fracture.model_copy(update={"snomed": [*kept, added]})}
    [change] = diff_value_sets(rules.value_sets, after)
    assert (change.value_set, change.status) == ("vertebral-fracture", "changed")
    assert change.what == (f"SNOMED CT {dropped.code} removed", "SNOMED CT 1234567 added")


def test_the_shared_files_that_differ_are_named(rules: Knowledge) -> None:
    info = rules.info.model_copy(update={"needs_action": list(reversed(rules.info.needs_action))})
    diff = diff_knowledge(rules, dataclasses.replace(rules, info=info))
    assert diff.files == ("ruleset.yaml",) and not diff.parameters and not diff.rules and not diff.value_sets


def test_the_words_of_a_rule_file_changed_are_card_text(rules: Knowledge) -> None:
    """The words that differ by hook are the rule file's; each rule of the file that uses them says so."""
    emergency = rules.rule("red-flag-emergency")
    words = {**emergency.words, "order_action": {**emergency.words["order_action"], "order-sign": "Hold it."}}
    after = tuple(dataclasses.replace(c, words=words) if c.rule.id == "red-flag-emergency" else c for c in rules.rules)
    [change] = diff_rules(rules.rules, after)
    assert change.what == ("card text: words.order_action",)


def test_a_parameter_changed_shows_in_the_rule_texts_that_name_it(rules_copy: Path, rules: Knowledge) -> None:
    """The rules that name a tuned parameter in their plain text read differently, and the diff says how."""
    before = rules.values["adherence_min"]
    after = round(before - 0.05, 2)
    set_parameter(rules_copy, "adherence_min", after)
    diff = diff_knowledge(rules, load_knowledge(rules_copy))
    assert [c.name for c in diff.parameters] == ["adherence_min"]
    changed = {c.rule_id: c.what for c in diff.rules}
    assert set(changed) == {"hold", "progress"}
    [what] = changed["progress"]
    assert what.startswith("plain.when …") and f"at least {before:.0%} of the planned" in what
    assert f"at least {after:.0%} of the planned" in what.split(" → ")[1]
