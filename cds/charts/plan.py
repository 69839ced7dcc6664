"""The patient's take-home plan, in the patient's language: every sentence comes from rules/patient-text/ (checked
when the rules load), with the dose written as the language writes numbers."""

from __future__ import annotations

from cds.charts.model import Dose
from cds.knowledge.patient_text import Catalogue, DoseLine, Section


def fill_line(line: DoseLine, measure: str, dose: Dose, words: Catalogue) -> str | None:
    """A dose sentence with the dose written in; None when the dose lacks what the measure needs."""
    filled = _filled([line.steps] if measure == "steps" else [line.minutes], measure, dose, words)
    return filled[0] if filled else None


def week(words: Catalogue, code: str, measure: str, dose: Dose | None) -> list[str]:
    """This week's sentences for a recommendation code and the dose in force (none: the no_plan words)."""
    texts = words.plan.this_week[code]
    if dose is not None and measure == "steps" and dose.quota is not None:
        return _filled(texts.steps, measure, dose, words)
    if dose is not None and dose.minutes is not None and dose.per_week is not None:
        return _filled(texts.minutes, measure, dose, words)
    return list(texts.no_plan)


def plan_sentences(words: Catalogue, codes: list[str], rule: str | None, measure: str, in_force: Dose | None,
                   proposed: Dose | None, accepted: bool) -> tuple[list[str], list[Section]]:
    """This week's sentences and the sections of a call's plan. The plan follows the card: under a rule with words
    of its own (an emergency), only those and the sections it keeps; else each recommendation's words for the dose
    in force, and a dose the card proposes labelled as a proposal until the clinician accepts the card, then as the
    plan."""
    plan = words.plan
    if rule is not None and rule in plan.by_rule:
        apart = plan.by_rule[rule]
        return list(apart.this_week), [s for s in plan.sections if s.heading in apart.sections]
    dose = proposed if accepted and proposed is not None else in_force
    sentences = [] if dose is not None else [plan.no_plan_in_force]
    for code in dict.fromkeys(c for c in codes if c in plan.this_week):
        sentences += [s for s in week(words, code, measure, dose) if s not in sentences]
    if proposed is not None:
        line = fill_line(plan.agreed if accepted else plan.proposed, measure, proposed, words)
        if line:
            sentences.append(line)
    return sentences, list(plan.sections)


def _filled(sentences: list[str], measure: str, dose: Dose, words: Catalogue) -> list[str]:
    if measure == "steps":
        if dose.quota is None:
            return []
        return [s.format(steps=words.number(dose.quota)) for s in sentences]
    if dose.minutes is None or dose.per_week is None:
        return []
    return [s.format(minutes=words.number(dose.minutes), per_week=words.number(dose.per_week)) for s in sentences]
