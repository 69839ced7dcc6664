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
        for kind in PLACEHOLDERS:
            _check_placeholders(kind, getattr(self, kind))
        return self


def _check_placeholders(kind: str, sentences: list[str]) -> None:
    """Each sentence of a kind of plan fills in only the names that kind has (PLACEHOLDERS)."""
    allowed = PLACEHOLDERS[kind]
    for sentence in sentences:
        names = {name for _, name, _, _ in string.Formatter().parse(sentence) if name is not None}
        if names - allowed:
            raise ValueError(f"{kind}: {sentence!r} uses {sorted(names - allowed)}; "
                             f"allowed: {sorted(allowed) or 'none'}")


class DoseLine(Strict):
    """One sentence naming a dose, for a plan in minutes and for one in steps."""

    minutes: Sentence
    steps: Sentence

    @model_validator(mode="after")
    def _placeholders(self) -> DoseLine:
        for kind in ("minutes", "steps"):
            _check_placeholders(kind, [getattr(self, kind)])
        return self

    def fill(self, measure: str, dose: Dose) -> str | None:
        """The sentence with the dose written in; None when the dose lacks what the measure needs."""
        filled = _filled([self.steps] if measure == "steps" else [self.minutes], measure, dose)
        return filled[0] if filled else None


class RuleWeek(Strict):
    """The plan under one rule, in place of its recommendation's words: no dose at all, and only these sections."""

    this_week: list[Sentence]
    sections: list[Sentence]  # the headings of the sections kept


class PlanText(Strict):
    version: str
    title: Sentence
    intro: list[Sentence]
    this_week_heading: Sentence
    sections: list[Section]
    this_week: dict[str, ThisWeek]
    no_plan_in_force: Sentence
    proposed: DoseLine
    agreed: DoseLine
    by_rule: dict[str, RuleWeek] = {}

    @model_validator(mode="after")
    def _kept_sections(self) -> PlanText:
        headings = {s.heading for s in self.sections}
        for rule, words in self.by_rule.items():
            unknown = set(words.sections) - headings
            if unknown:
                raise ValueError(f"by_rule.{rule}: sections {sorted(unknown)} are not headings of sections")
        return self

    def week(self, code: str, measure: str, dose: Dose | None) -> list[str]:
        """This week's sentences for a recommendation code and the dose in force (none: the no_plan words)."""
        words = self.this_week[code]
        if dose is not None and measure == "steps" and dose.quota is not None:
            return _filled(words.steps, measure, dose)
        if dose is not None and dose.minutes is not None and dose.per_week is not None:
            return _filled(words.minutes, measure, dose)
        return list(words.no_plan)

    def page(self, codes: list[str], rule: str | None, measure: str, in_force: Dose | None,
             proposed: Dose | None, accepted: bool) -> tuple[list[str], list[Section]]:
        """This week's sentences and the sections of a call's plan. The plan follows the card: under a rule with
        words of its own (an emergency), only those and the sections it keeps; else each recommendation's words
        for the dose in force, and a dose the card proposes labelled as a proposal until the clinician accepts the
        card, then as the plan."""
        if rule is not None and rule in self.by_rule:
            apart = self.by_rule[rule]
            return list(apart.this_week), [s for s in self.sections if s.heading in apart.sections]
        dose = proposed if accepted and proposed is not None else in_force
        sentences = [] if dose is not None else [self.no_plan_in_force]
        for code in dict.fromkeys(c for c in codes if c in self.this_week):
            sentences += [s for s in self.week(code, measure, dose) if s not in sentences]
        if proposed is not None:
            line = (self.agreed if accepted else self.proposed).fill(measure, proposed)
            if line:
                sentences.append(line)
        return sentences, list(self.sections)


def _filled(sentences: list[str], measure: str, dose: Dose) -> list[str]:
    if measure == "steps":
        if dose.quota is None:
            return []
        return [s.format(steps=f"{round(dose.quota):,}") for s in sentences]
    if dose.minutes is None or dose.per_week is None:
        return []
    return [s.format(minutes=dose.minutes, per_week=dose.per_week) for s in sentences]


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
