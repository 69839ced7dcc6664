"""The checks of `pacing-cds rules check` beyond loading: what an author of rules/ gets wrong that the service could
still run with. Each check returns its problems, each naming its file and place and saying how to fix it.

- a rule text that writes a threshold's value instead of naming the parameter (it goes stale when a site tunes it);
- a SNOMED CT code whose check digit is wrong (a typo: the code matches nothing), in value-sets/ and codes.yaml;
- a code listed twice in a value set, an ICD-10-CM prefix inside another, a code shared with a value set read apart
  (disjoint_from), a published value set without a reference;
- a patient text (rules/patient-text/) harder to read than its language's bound (cds/knowledge/reading.py);
- a parameter or recommendation code that docs/clinical.md does not name: only where docs/ lies beside rules/ (a
  checkout; an installed rule set has no docs, and the check says it was not made).

Pure but for reading docs/clinical.md.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cds.knowledge.loader import (
    CODES_FILE,
    VALUE_SETS_DIR,
    CompiledRule,
    Knowledge,
    shown_texts,
)
from cds.knowledge.reading import reading_levels, reading_problems, table
from cds.knowledge.schema import Rule, template_texts
from cds.knowledge.texts import Literal, literals, names, placeholder_hint

BUILT_HERE = "built for Pacing CDS"  # a value set's source.name when it was built here, not published
DOCS_DIR = "docs"
CLINICAL_DOC = "clinical.md"


@dataclass
class Report:
    """What the checks found: problems (rules check fails) and notes (what was not checked, and why)."""

    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    reading: str = ""  # the reading level of every patient text, as a table


def check_rule_set(knowledge: Knowledge, rules_dir: Path) -> Report:
    """Every check of this module on a loaded rule set and its folder."""
    report = Report()
    report.problems += literal_numbers(knowledge)
    report.problems += snomed_check_digits(knowledge)
    report.problems += value_set_codes(knowledge)
    levels = reading_levels(knowledge.patient)
    report.problems += reading_problems(knowledge.patient, levels)
    report.reading = table(levels)
    docs = rules_dir.parent / DOCS_DIR
    if (docs / CLINICAL_DOC).is_file():
        report.problems += docs_coverage(knowledge, docs)
    else:
        report.notes.append(f"docs coverage not checked: no {DOCS_DIR}/{CLINICAL_DOC} beside {rules_dir.name}/ "
                            "(as with the rules an installed package carries)")
    return report


# ---------------------------------------------------------------- thresholds written as numbers


def rule_texts(rule: Rule) -> Iterator[tuple[str, str]]:
    """(field, text) of every text of a rule a reader sees: the shown texts, the card's and its suggestions'."""
    yield from shown_texts(rule)
    conclude = rule.conclude
    yield "conclude.summary", conclude.summary
    yield "conclude.detail", conclude.detail
    for index, reason in enumerate(conclude.reasons):
        yield f"conclude.reasons[{index}].text", reason.text
    if conclude.no_reason is not None:
        yield "conclude.no_reason", conclude.no_reason
    for index, finding in enumerate(conclude.findings):
        for text in template_texts(finding):
            yield f"conclude.findings[{index}]", text
    for index, suggestion in enumerate(conclude.suggest):
        for name in ("label", "description", "instruction", "goal_label", "goal_description", "goal_text"):
            for text in template_texts(getattr(suggestion, name)):
                yield f"conclude.suggest[{index}].{name}", text


def literal_numbers(knowledge: Knowledge) -> list[str]:
    """A number in a rule's text equal to the value of a parameter the rule uses (in its conditions, or by name in
    its texts), written as the number rather than as the parameter: a site that tunes the parameter would read
    the old number. Numbers inside a {placeholder}, codes, section numbers (1.2.8) and words (NG193) are not
    read as numbers."""
    problems = []
    for compiled in knowledge.rules:
        rule = compiled.as_written
        values = _values_used(compiled, knowledge)
        for where, text in rule_texts(rule):
            for literal in literals(text, values):
                problems.append(_literal_problem(compiled, where, literal, values))
    return problems


def _values_used(compiled: CompiledRule, knowledge: Knowledge) -> dict[str, float | int]:
    named: set[str] = set()
    for _, text in rule_texts(compiled.as_written):
        try:
            named |= {re.split(r"[.\[]", n, maxsplit=1)[0] for n in names(text)}
        except ValueError:
            continue
    values = dict(compiled.parameters)
    values.update({n: knowledge.values[n] for n in sorted(named) if n in knowledge.values})
    return values


def _literal_problem(compiled: CompiledRule, where: str, literal: Literal, values: dict[str, float | int]) -> str:
    value = values[literal.parameters[0]]
    return (f"{compiled.file} rule {compiled.rule.id} {where}: writes {literal.written!r}, the value of "
            f"{' and '.join(literal.parameters)} ({value:g}), which the rule uses; write {placeholder_hint(literal)} "
            f"instead, so that the text follows the value a site sets (a number that is not this threshold can be "
            f"written in words)")


# ---------------------------------------------------------------- codes


# Verhoeff dihedral-group multiplication and position permutation tables (SNOMED CT check digits).
_D = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9), (1, 2, 3, 4, 0, 6, 7, 8, 9, 5), (2, 3, 4, 0, 1, 7, 8, 9, 5, 6),
    (3, 4, 0, 1, 2, 8, 9, 5, 6, 7), (4, 0, 1, 2, 3, 9, 5, 6, 7, 8), (5, 9, 8, 7, 6, 0, 4, 3, 2, 1),
    (6, 5, 9, 8, 7, 1, 0, 4, 3, 2), (7, 6, 5, 9, 8, 2, 1, 0, 4, 3), (8, 7, 6, 5, 9, 3, 2, 1, 0, 4),
    (9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
)
_P = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9), (1, 5, 7, 6, 2, 8, 3, 0, 9, 4), (5, 8, 0, 3, 7, 9, 6, 1, 4, 2),
    (8, 9, 1, 6, 0, 4, 3, 5, 2, 7), (9, 4, 5, 3, 1, 2, 6, 8, 7, 0), (4, 2, 8, 6, 5, 7, 3, 9, 0, 1),
    (2, 7, 9, 3, 8, 0, 6, 4, 1, 5), (7, 0, 4, 6, 9, 1, 3, 2, 5, 8),
)
SNOMED_ID = re.compile(r"^[0-9]{6,18}$")


def verhoeff_valid(digits: str) -> bool:
    """True when the last digit is the Verhoeff check digit of the others."""
    check = 0
    for position, digit in enumerate(reversed(digits)):
        check = _D[check][_P[position % 8][int(digit)]]
    return check == 0


def snomed_valid(code: str) -> bool:
    """A SNOMED CT identifier: 6 to 18 digits whose last is the Verhoeff check digit of the others."""
    return bool(SNOMED_ID.match(code)) and verhoeff_valid(code)


def snomed_check_digits(knowledge: Knowledge) -> list[str]:
    """Every SNOMED CT code of value-sets/ and codes.yaml is an identifier with a valid check digit."""
    problems = []
    for value_set in knowledge.value_sets.values():
        for index, entry in enumerate(value_set.snomed):
            if not snomed_valid(entry.code):
                problems.append(f"{VALUE_SETS_DIR}/{value_set.id}.yaml snomed[{index}]: {entry.code} "
                                f"({entry.display}) is not a SNOMED CT identifier: its check digit is wrong; "
                                "copy the code again from the terminology browser")
    codes = knowledge.codes
    listed: list[tuple[str, str]] = [(f"exercise_orders[{i}]", code) for i, code in enumerate(codes.exercise_orders)]
    coded = [*((f"orderables.{name}", c) for name, c in codes.orderables.items()),
             ("step_goal_target", codes.step_goal_target), ("pa_category", codes.pa_category),
             ("draft_reason", codes.draft_reason)]
    listed += [(where, c.code) for where, c in coded if c.system == "snomed"]
    for where, code in listed:
        if not snomed_valid(code):
            problems.append(f"{CODES_FILE} {where}: {code} is not a SNOMED CT identifier: its check digit is "
                            "wrong; copy the code again from the terminology browser")
    return problems


def value_set_codes(knowledge: Knowledge) -> list[str]:
    """No value set lists a code twice or an ICD-10-CM prefix inside another of its prefixes ("G93.3" already
    matches "G93.32"), shares a code with a value set it names in disjoint_from, and a published value set names
    its reference (OID or URL)."""
    problems = []
    for value_set in knowledge.value_sets.values():
        where = f"{VALUE_SETS_DIR}/{value_set.id}.yaml"
        codes = [entry.code for entry in value_set.snomed]
        for code in sorted({c for c in codes if codes.count(c) > 1}):
            problems.append(f"{where} snomed: {code} is listed more than once; keep one")
        prefixes = [entry.prefix for entry in value_set.icd10cm]
        for prefix in sorted({p for p in prefixes if prefixes.count(p) > 1}):
            problems.append(f"{where} icd10cm: {prefix} is listed more than once; keep one")
        for outer in dict.fromkeys(prefixes):
            for inner in dict.fromkeys(prefixes):
                if inner != outer and inner.replace(".", "").startswith(outer.replace(".", "")):
                    problems.append(f"{where} icd10cm: {inner} lies inside {outer}, which already matches it; "
                                    f"remove {inner}")
        for other in (knowledge.value_sets.get(name) for name in value_set.disjoint_from):
            if other is None:
                continue  # the loader reports the name
            shared = sorted({c.code for c in value_set.snomed} & {c.code for c in other.snomed})
            problems += [f"{where} snomed: {code} is also in {other.id}, which disjoint_from reads apart; keep it in "
                         f"one of them" for code in shared]
            bare = [(p.prefix, p.prefix.replace(".", "")) for p in value_set.icd10cm]
            theirs = [(p.prefix, p.prefix.replace(".", "")) for p in other.icd10cm]
            problems += [f"{where} icd10cm: {mine} overlaps {their} of {other.id}, which disjoint_from reads apart; "
                         f"narrow the prefix" for mine, a in bare for their, b in theirs
                         if a.startswith(b) or b.startswith(a)]
        if value_set.source.name != BUILT_HERE and not value_set.source.reference:
            problems.append(f"{where} source: a published value set names its reference (OID or URL); else its "
                            f"source.name is {BUILT_HERE!r}")
    return problems


# ---------------------------------------------------------------- documentation


def docs_coverage(knowledge: Knowledge, docs: Path) -> list[str]:
    """docs/clinical.md, the clinical specification, names (in backticks) every parameter and every
    recommendation code of the rule set."""
    text = (docs / CLINICAL_DOC).read_text(encoding="utf-8")
    named = set(re.findall(r"`([^`\n]+)`", text))
    where = f"{DOCS_DIR}/{CLINICAL_DOC}"
    problems = [f"{where}: does not name the parameter `{name}` of parameters.yaml; say in it what the threshold is "
                f"for and where it comes from" for name in sorted(set(knowledge.parameters) - named)]
    codes = sorted({c.rule.conclude.code for c in knowledge.rules} - named)
    problems += [f"{where}: does not name the recommendation code `{code}`; specify the recommendation there"
                 for code in codes]
    return problems
