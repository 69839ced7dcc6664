"""The patient's take-home plan: every sentence comes from rules/patient-plan.yaml, checked at start-up."""

from __future__ import annotations

import string
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError, model_validator

from cds.charts.model import Dose
from cds.knowledge.loader import read_yaml

PLAN_FILE = "patient-plan.yaml"
Sentence = Annotated[str, StringConstraints(min_length=1, max_length=300, strip_whitespace=True)]
PLACEHOLDERS = {"minutes": {"minutes", "per_week"}, "steps": {"steps"}, "no_plan": set()}


class PlanTextError(Exception):
    """patient-plan.yaml is missing, malformed, or leaves a recommendation without words."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Section(Strict):
    heading: Sentence
    sentences: list[Sentence]


class ThisWeek(Strict):
    """What to do this week under one recommendation, for each kind of plan."""

    minutes: list[Sentence]
    steps: list[Sentence]
    no_plan: list[Sentence]

    @model_validator(mode="after")
    def _placeholders(self) -> ThisWeek:
        for kind, allowed in PLACEHOLDERS.items():
            for sentence in getattr(self, kind):
                names = {name for _, name, _, _ in string.Formatter().parse(sentence) if name is not None}
                if names - allowed:
                    raise ValueError(f"{kind}: {sentence!r} uses {sorted(names - allowed)}; "
                                     f"allowed: {sorted(allowed) or 'none'}")
        return self


class PlanText(Strict):
    version: str
    title: Sentence
    intro: list[Sentence]
    this_week_heading: Sentence
    sections: list[Section]
    this_week: dict[str, ThisWeek]

    def week(self, code: str, measure: str, dose: Dose | None) -> list[str]:
        """This week's sentences for a recommendation code and the dose it proposes (or the plan in force)."""
        words = self.this_week[code]
        if dose is not None and measure == "steps" and dose.quota is not None:
            return [s.format(steps=f"{round(dose.quota):,}") for s in words.steps]
        if dose is not None and dose.minutes is not None and dose.per_week is not None:
            return [s.format(minutes=dose.minutes, per_week=dose.per_week) for s in words.minutes]
        return list(words.no_plan)


def load_plan_text(rules_dir: Path, codes: set[str]) -> PlanText:
    """Read and check patient-plan.yaml: its shape, its placeholders, and a text for every code in `codes`."""
    path = rules_dir / PLAN_FILE
    try:
        plan = PlanText.model_validate(read_yaml(path.read_text(encoding="utf-8")))
    except (OSError, yaml.YAMLError) as exc:
        raise PlanTextError(f"{path.name}: {exc}") from exc
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                             for e in exc.errors(include_url=False))
        raise PlanTextError(f"{path.name}: {problems}") from exc
    missing = sorted(codes - set(plan.this_week))
    if missing:
        raise PlanTextError(f"{path.name}: this_week has no text for {', '.join(missing)}")
    return plan
