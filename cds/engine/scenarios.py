"""Run the scenario files beside the rules: given facts, does each rule fire as its author expects?"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from cds.engine.host import RuleEngine
from cds.knowledge.loader import Knowledge
from cds.knowledge.schema import Scenario

SCENARIO_NOW = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class ScenarioResult:
    file: str
    scenario: Scenario
    service: str
    problem: str | None

    @property
    def ok(self) -> bool:
        return self.problem is None


def run_scenarios(knowledge: Knowledge, engine: RuleEngine) -> list[ScenarioResult]:
    results = []
    for file, scenario in knowledge.scenarios:
        service = scenario.service or knowledge.rule(scenario.rule).services[0]
        evaluation = engine.evaluate(service, list(scenario.given), SCENARIO_NOW)
        problems = []
        fired = evaluation.fired(scenario.rule)
        if fired != scenario.fires:
            problems.append(f"{scenario.rule} {'fired' if fired else 'did not fire'}")
        if scenario.expect is not None and evaluation.codes != scenario.expect:
            problems.append(f"recommendations {evaluation.codes}, expected {scenario.expect}")
        results.append(ScenarioResult(file, scenario, service, "; ".join(problems) or None))
    return results
