"""What `pacing-cds rules impact` compares and finds: the two rule sets, the examples and the panel's rows under
each, and the transitions and red flags between them. Pure data and functions, for the command and its page."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cds.knowledge.diff import RuleSetDiff
from cds.knowledge.loader import Knowledge
from cds.panel.rows import RED_FLAG
from cds.panel.source import Problem

NONE = "none"  # the dose recommendation of a patient with none (no dose finding)


@dataclass(frozen=True)
class RuleSet:
    """One side of the comparison: where its rules came from (as the user named them), loaded and as files."""

    label: str
    knowledge: Knowledge
    bundle: dict[str, bytes]

    @property
    def title(self) -> str:
        return f"{self.knowledge.info.name} {self.knowledge.version}"

    @property
    def silent_rules(self) -> list[str]:
        return [c.rule.id for c in self.knowledge.rules if c.rule.mode == "silent"]


@dataclass(frozen=True)
class ExampleResult:
    """An example request answered under both rule sets: its card topic codes and red flags on either side (an
    answer that failed says why in place of its codes)."""

    name: str
    before: str
    after: str
    flags_before: str = ""
    flags_after: str = ""

    @property
    def changed(self) -> bool:
        return (self.before, self.flags_before) != (self.after, self.flags_after)


@dataclass
class Impact:
    """Everything the outputs say: the two rule sets and their difference, the panel's rows (None without a
    panel), the examples compared (None when not asked for or not found)."""

    before: RuleSet
    after: RuleSet
    baseline: str
    now: datetime
    diff: RuleSetDiff
    rows: list[dict[str, Any]] | None = None
    problems: list[Problem] = field(default_factory=list)
    not_listed: int = 0
    examples: list[ExampleResult] | None = None
    notes: list[str] = field(default_factory=list)
    panel: str = ""  # where the panel came from
    workers: int = 0
    seconds: float = 0.0

    @property
    def changed(self) -> list[dict[str, Any]]:
        return [r for r in self.rows or [] if r["changed"]]


def transitions(rows: list[dict[str, Any]]) -> dict[tuple[str, str], list[str]]:
    """The patients by (dose recommendation before, after), "none" for no dose recommendation."""
    found: dict[tuple[str, str], list[str]] = {}
    for row in rows:
        key = (row["recommendation_before"] or NONE, row["recommendation_after"] or NONE)
        found.setdefault(key, []).append(row["patient"])
    return found


def counts(rows: list[dict[str, Any]]) -> Counter[str]:
    """Patients by dose recommendation on either side, for the order of the transition table."""
    found: Counter[str] = Counter()
    for row in rows:
        found[row["recommendation_before"] or NONE] += 1
        found[row["recommendation_after"] or NONE] += 1
    return found


def flags_lost(codes_before: str, codes_after: str, flags_before: str, flags_after: str) -> list[str]:
    """The red flags of the answer before that the answer after lacks (the red-flag recommendation itself when
    its card is gone and no flag is named)."""
    after = set(flags_after.split())
    lost = [flag for flag in flags_before.split() if flag not in after]
    if not lost and RED_FLAG in codes_before.split() and RED_FLAG not in codes_after.split():
        lost = [RED_FLAG]
    return lost


def row_flags(row: dict[str, Any]) -> tuple[list[str], list[str]]:
    """A panel row's red flags (lost, gained)."""
    return (flags_lost(row["before"], row["after"], row["red_flags_before"], row["red_flags_after"]),
            flags_lost(row["after"], row["before"], row["red_flags_after"], row["red_flags_before"]))


def example_flags(example: ExampleResult) -> tuple[list[str], list[str]]:
    """An example's red flags (lost, gained)."""
    return (flags_lost(example.before, example.after, example.flags_before, example.flags_after),
            flags_lost(example.after, example.before, example.flags_after, example.flags_before))


def red_flags_lost(impact: Impact) -> tuple[int, int]:
    """The patients and the examples that lose a red flag."""
    return (sum(1 for row in impact.rows or [] if row_flags(row)[0]),
            sum(1 for example in impact.examples or [] if example_flags(example)[0]))
