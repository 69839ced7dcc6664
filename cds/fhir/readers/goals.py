"""Goals in force -> the step goal (its quota in steps a day, from its target or its description), the minute goal
(the PA IG's weekly minutes target) and weight-management goals."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from cds.clinical.records import CURRENT, MinuteGoal, StepGoal
from cds.fhir.readers.common import (
    ICD10,
    LOINC,
    SNOMED,
    STEP_UNITS,
    WEEKLY_MINUTES,
    Reader,
    codes_of,
    instruction_patterns,
    parse_time,
    quantity_of,
)
from cds.knowledge import Knowledge


class GoalTables:
    """What the Goal reader takes from the knowledge, once per rule set (Knowledge.derived)."""

    def __init__(self, knowledge: Knowledge) -> None:
        codes = knowledge.codes
        self.step_measures = codes.loinc("steps_daily")
        self.minute_goal_measures = frozenset(codes.minute_goal_measures)
        self.weight_measures = frozenset(codes.weight_goal_measures)
        self.explains_weight_loss = frozenset(codes.explains_weight_loss)
        self.quota_patterns = instruction_patterns(tuple(codes.goal_quota))
        self.step_goal_words = re.compile(codes.step_goal_words, re.IGNORECASE) if codes.step_goal_words else None


class GoalReader(Reader, GoalTables):
    """Reads Goals into the record (a part of RecordBuilder)."""

    def goal(self, resource: dict[str, Any]) -> None:
        """A Goal in force: a weight-management goal, a minute goal (PA IG 82290-8 target), or a step quota (its
        target in steps a day, else a number of steps in its description; a step goal with neither is a goal whose
        quota cannot be read)."""
        reference = f"Goal/{resource.get('id', '?')}"
        status = resource.get("lifecycleStatus")
        if self.status("goal", status, reference) != CURRENT:
            return
        targets = [t for t in resource.get("target") or [] if isinstance(t, dict)]
        measures = {code for t in targets for code in codes_of(t.get("measure"), LOINC)}
        described = self.knowledge.value_set_index.lookup(codes_of(resource.get("description"), SNOMED),
                                                          codes_of(resource.get("description"), ICD10))
        if measures & self.weight_measures or set(described) & self.explains_weight_loss:
            self.record.weight_goals.append(reference)
        for target in targets:
            if set(codes_of(target.get("measure"), LOINC)) & self.minute_goal_measures:
                quantity = quantity_of(target.get("detailQuantity"))
                if quantity is not None and quantity[1] in WEEKLY_MINUTES and quantity[0] > 0:
                    self.record.minute_goal = MinuteGoal(reference, quantity[0] * WEEKLY_MINUTES[quantity[1]])
        start = parse_time(resource.get("startDate")) or parse_time(resource.get("statusDate"))
        quota: float | None = None
        step_target = False
        for target in targets:
            if set(codes_of(target.get("measure"), LOINC)) & self.step_measures:
                step_target = True
                quantity = quantity_of(target.get("detailQuantity"))
                if quantity is not None and quantity[1] in STEP_UNITS and quantity[0] > 0:
                    quota = quantity[0]
                    break
        if quota is None and (step_target or not measures):
            quota = _described_quota(resource.get("description"), self.quota_patterns)
            # A goal with no target whose description speaks of steps is a step goal, readable or not; so is a
            # physical-activity goal (the PA IG's category) with no target at all: a plan whose dose is not written.
            step_target = step_target or quota is not None or _mentions(resource.get("description"),
                                                                        self.step_goal_words) \
                or (not targets and self._activity_goal(resource))
        if not step_target:
            return
        goal = StepGoal(reference, quota, resource, start)
        if self.record.step_goal is None or _goal_rank(goal) > _goal_rank(self.record.step_goal):
            self.record.step_goal = goal

    def _activity_goal(self, resource: dict[str, Any]) -> bool:
        """A Goal in the PA IG's PhysicalActivity category."""
        pa = self.knowledge.codes.pa_category
        system = self.knowledge.codes.systems.get(pa.system)
        return any(pa.code in codes_of(concept, system) for concept in resource.get("category") or []
                   if isinstance(concept, dict))


def _goal_rank(goal: StepGoal) -> tuple[bool, datetime, float]:
    """Of several step goals in force, the one that stands: a readable quota first, then the latest start, then the
    larger quota (whatever order the EHR listed them in)."""
    return (goal.steps_per_day is not None, goal.start or datetime.min.replace(tzinfo=UTC), goal.steps_per_day or 0.0)


def _text(description: Any) -> str:
    """A CodeableConcept's text (a Goal's description), at most its first 2,000 characters."""
    text = description.get("text") if isinstance(description, dict) else None
    return text[:2000] if isinstance(text, str) else ""


def _mentions(description: Any, pattern: re.Pattern[str] | None) -> bool:
    return pattern is not None and pattern.search(_text(description)) is not None


def _described_quota(description: Any, patterns: list[re.Pattern[str]]) -> float | None:
    """A number of steps a day written in a Goal's description ("Walk 5,000 steps a day"), by the goal_quota
    patterns of codes.yaml; None when none matches."""
    text = _text(description)
    for pattern in patterns:
        match = pattern.search(text)
        if match:
            steps = float(match.group("steps").replace(",", ""))
            if steps > 0:
                return steps
    return None
