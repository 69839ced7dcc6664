"""Evaluations: findings with their trace, precedence as docs/clinical.md gives it, failures surfaced."""

from __future__ import annotations

import copy
import json
import threading
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cds.engine import EngineError, Knowledge, RuleEngine
from cds.engine.host import Fired, resolve_precedence
from tests.support.facts import BASE, facts
from tests.support.rules import RULES

NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
# The patient fact a progress-worthy week gives (the `on-track` fixture of the scenarios).
ON_TRACK: dict[str, Any] = yaml.safe_load((RULES / "fixtures.yaml").read_text())["fixtures"]["on-track"]
# The parameters the progress rule's conditions name, with the values of rules/parameters.yaml.
PROGRESS_PARAMETERS = ("min_days_on_dose", "step_back_hold_days", "adherence_min", "hold_pain_delta",
                       "acwr_progression_cap")


def test_progress_finding_carries_its_trace(engine: RuleEngine, knowledge: Knowledge) -> None:
    evaluation = engine.evaluate("pacing-review", [ON_TRACK], NOW)
    assert evaluation.codes == ["progress"]
    [finding] = evaluation.findings
    assert finding.rule_id == "progress" and finding.rule_version == knowledge.rule("progress").rule.version
    assert finding.facts == {"p": ON_TRACK}
    assert finding.parameters == {name: knowledge.values[name] for name in PROGRESS_PARAMETERS}
    assert evaluation.version == knowledge.version
    assert evaluation.now == NOW


def test_red_flag_outranks_and_suppresses(engine: RuleEngine) -> None:
    facts = [{**ON_TRACK, "inactive": True, "boom_bust": True},
             {"t": "vitals", "systolic": 190.0, "diastolic": 100.0, "temperature_max": 38.4,
              "bp_high_systolic": 190.0, "bp_high_diastolic": 100.0},
             {"t": "condition", "clinical": "current", "value_set": "vertebral-fracture", "code": "S22.000A"},
             {"t": "condition", "clinical": "current", "value_set": "cauda-equina", "code": "192970008",
              "days_since_recorded": 2}]
    evaluation = engine.evaluate("pacing-review", facts, NOW)
    assert evaluation.codes == ["red-flag", "boom-bust"]
    assert [f.rule_id for f in evaluation.findings if f.code == "red-flag"] == [
        "red-flag-emergency", "red-flag-spinal"], "every red flag kept, the emergency first"
    outcomes = {f.rule_id: f.outcome for f in evaluation.trace}
    assert outcomes["precaution-blood-pressure"] == "outranked by red-flag"
    assert outcomes["progress"] == "suppressed by red-flag"
    assert outcomes["inactivity"] == "suppressed by red-flag"
    assert outcomes["boom-bust"] == "selected"


def test_one_dose_recommendation_the_lowest_precedence(engine: RuleEngine) -> None:
    facts = [{**ON_TRACK, "flare": True, "pain_delta": 2.5, "flare_weeks": 2, "weekly_minutes": 200}]
    evaluation = engine.evaluate("pacing-review", facts, NOW)
    assert evaluation.codes == ["re-baseline"]
    outcomes = {f.rule_id: f.outcome for f in evaluation.trace}
    assert outcomes == {"re-baseline": "selected", "step-back": "outranked by re-baseline",
                        "goal-met": "outranked by re-baseline"}  # hold: a flare is not a hold


def test_each_draft_order_gets_its_own_finding(engine: RuleEngine) -> None:
    facts = [{"t": "order", "ref": "ServiceRequest/a", "has_activity_data": True, "jump": 0.5},
             {"t": "order", "ref": "ServiceRequest/b", "has_activity_data": False, "weekly": 60},
             {"t": "order", "ref": "ServiceRequest/c", "has_activity_data": True, "jump": 0.1}]
    evaluation = engine.evaluate("exercise-order-sign", facts, NOW)
    assert [(f.code, f.subject) for f in evaluation.findings] == [
        ("order-dose-jump", "ServiceRequest/a"), ("order-no-baseline", "ServiceRequest/b")]


def test_services_only_see_their_rules(engine: RuleEngine) -> None:
    order = {"t": "order", "ref": "ServiceRequest/a", "has_activity_data": True, "jump": 0.5}
    assert engine.evaluate("pacing-review", [order], NOW).codes == []
    assert engine.evaluate("exercise-order-select", [ON_TRACK], NOW).codes == []


def test_no_facts_no_findings(engine: RuleEngine) -> None:
    evaluation = engine.evaluate("pacing-review", [], NOW)
    assert evaluation.findings == () and evaluation.trace == ()


def test_evaluations_do_not_share_facts(engine: RuleEngine) -> None:
    flagged = engine.evaluate("pacing-review", [ON_TRACK, {"t": "vitals", "temperature_max": 39.0}], NOW)
    clean = engine.evaluate("pacing-review", [ON_TRACK], NOW)
    assert flagged.codes == ["precaution"]
    assert clean.codes == ["progress"]


def test_identical_facts_are_harmless(engine: RuleEngine) -> None:
    assert engine.evaluate("pacing-review", [ON_TRACK, dict(ON_TRACK)], NOW).codes == ["progress"]


@pytest.mark.parametrize(("fact", "message"), [
    ({"t": "patient", "adherence": "high"}, "adherence: 'high' is not a number"),
    ({"t": "patient", "id": "p1"}, "field 'id' is not in the vocabulary"),
    ({"t": "lab"}, "t must be one of"),
    ({"t": "condition", "clinical": "current", "value_set": "headache"}, "is not one of"),
])
def test_facts_outside_the_vocabulary_are_refused(engine: RuleEngine, fact: dict[str, Any], message: str) -> None:
    with pytest.raises(EngineError, match=message):
        engine.evaluate("pacing-review", [fact], NOW)


def test_unknown_service_is_refused(engine: RuleEngine) -> None:
    with pytest.raises(EngineError, match="no rules for service"):
        engine.evaluate("nope", [], NOW)


def test_an_action_that_raises_is_surfaced(knowledge: Knowledge) -> None:
    """An action that raises is abandoned in the engine and surfaced; the next evaluation is unharmed."""

    class Faulty(RuleEngine):
        @staticmethod
        def _action(rule_id: str, matched: dict[str, Any]) -> tuple[str, dict[str, Any]]:
            if rule_id == "progress":
                raise ValueError("broken action")
            return RuleEngine._action(rule_id, matched)

    faulty = Faulty(knowledge)
    with pytest.raises(EngineError, match="broken action"):
        faulty.evaluate("pacing-review", [ON_TRACK], NOW)
    assert faulty.evaluate("pacing-review", [{**ON_TRACK, "flare": True}], NOW).codes == ["step-back"]
    with pytest.raises(EngineError, match="broken action"):  # the failed session left nothing behind
        faulty.evaluate("pacing-review", [ON_TRACK], NOW)


def test_building_starts_no_thread_and_leaves_the_knowledge_intact(knowledge: Knowledge) -> None:
    before = copy.deepcopy([c.conditions for c in knowledge.rules])
    threads = threading.active_count()
    RuleEngine(knowledge)
    RuleEngine(knowledge)  # a second host over the same definitions works: nothing was consumed
    assert threading.active_count() == threads
    assert [c.conditions for c in knowledge.rules] == before


def test_precedence_resolution_on_its_own() -> None:
    def fired(rule_id: str, code: str, kind: str, precedence: int, ref: str | None = None,
              suppressed_by: tuple[str, ...] = ()) -> Fired:
        facts = {"o": {"t": "order", "ref": ref}} if ref else {"p": {"t": "patient"}}
        return Fired(rule_id, "1.0.0", code, kind, precedence, facts, {}, suppressed_by)

    trace = [fired("progress", "progress", "dose", 9, suppressed_by=("red-flag",)),
             fired("hold", "hold", "dose", 7),
             fired("boom", "boom-bust", "pattern", 1),
             fired("jump", "order-dose-jump", "order", 1, "ServiceRequest/x")]
    findings, decided = resolve_precedence(trace)
    assert [f.code for f in findings] == ["hold", "order-dose-jump", "boom-bust"]
    assert [f.outcome for f in decided] == ["outranked by hold", "selected", "selected", "selected"]


def test_facts_come_back_from_the_engine_as_they_were_given(engine: RuleEngine) -> None:
    """The engine's JSON (orjson, in cds/engine/host.py) keeps text beyond ASCII and every digit of a number: the
    facts a finding matched are the facts given."""
    condition = {"t": "condition", "clinical": "current", "value_set": "cauda-equina", "code": "Cauda équina ✓ “192970008”",
                 "days_since_recorded": 2}
    vitals = {"t": "vitals", "systolic": 190.12345678901234, "diastolic": 100.0, "temperature_max": 38.4}
    evaluation = engine.evaluate("pacing-review", [ON_TRACK, vitals, condition], NOW)
    matched = [fact for fired in evaluation.trace for fact in fired.facts.values()]
    assert condition in matched
    assert vitals in matched


def test_a_fact_meeting_two_branches_of_an_or_fires_the_rule_once(engine: RuleEngine, knowledge: Knowledge) -> None:
    """progress holds `pain_delta` under the hold line OR no pain data: a patient with both fires it once."""
    scenario = next(s for _, s in knowledge.scenarios if s.rule == "progress" and s.fires)
    both = [{**scenario.given[0], "pain_known": False, "pain_delta": 0.0}]
    evaluation = engine.evaluate("pacing-review", both, NOW)
    assert [f.rule_id for f in evaluation.trace] == ["progress"]
    assert [f.rule_id for f in evaluation.findings] == ["progress"]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(given_facts=facts(), service=st.sampled_from(sorted(BASE.services)))
def test_a_rule_fires_once_per_evaluation_and_facts_matched(engine: RuleEngine, given_facts: list[dict[str, Any]],
                                                            service: str) -> None:
    trace = engine.evaluate(service, given_facts, NOW).trace
    fired = [(f.rule_id, json.dumps(f.facts, sort_keys=True)) for f in trace]
    assert len(fired) == len(set(fired))
