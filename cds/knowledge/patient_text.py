"""What the patient reads, in the patient's language: rules/patient-text/<tag>.yaml, one file per language.

Each file holds the take-home plan (`plan`), the draft order's patient instructions (`instructions`), the step Goal's
texts (`goals`) and the safety sentences these use by name (`safety`). English (en.yaml) is the language we fall
back to; every other file has the same keys, the same {placeholders} and the same number of sentences in each list,
so that no language can lose a sentence, a dose or a warning. A rule names an instruction or a goal text by its key
(rules/<code>/rule.yaml `instruction`, `goal_text`).

Pure: files in, checked catalogues or problems out; Babel writes numbers, dates and language names for a locale.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol

import yaml
from babel import Locale, UnknownLocaleError
from babel.dates import format_date
from babel.numbers import format_decimal
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from cds.knowledge.files import read_yaml

PATIENT_TEXT_DIR = "patient-text"
FALLBACK = "en"  # the language every other file follows, and the one a patient gets when we lack theirs
Sentence = Annotated[str, StringConstraints(min_length=1, max_length=600, strip_whitespace=True)]
Key = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]{0,63}$")]
SafetyKey = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
# The dose each kind of plan sentence may fill in.
PLAN_PLACEHOLDERS = {"minutes": {"minutes", "per_week"}, "steps": {"steps"}, "no_plan": set()}
# Parts of a file that are about the file, not sentences a patient reads: not compared between languages.
OWN_PARTS = {"language", "name", "reading", "forbidden_words"}
_FIELD = re.compile(r"\{([a-z_]+)\}")


class PatientTextError(Exception):
    """The patient texts cannot be used; `problems` lists every reason."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class DoseLike(Protocol):
    """The dose a plan sentence names (cds.charts.model.Dose)."""

    @property
    def minutes(self) -> int | None: ...
    @property
    def per_week(self) -> int | None: ...
    @property
    def quota(self) -> float | None: ...


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def placeholders(text: str) -> set[str]:
    """The names a text fills in."""
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


def _check_placeholders(kind: str, sentences: list[str]) -> None:
    """Each sentence of a kind of plan fills in only the names that kind has (PLAN_PLACEHOLDERS)."""
    allowed = PLAN_PLACEHOLDERS[kind]
    for sentence in sentences:
        names = placeholders(sentence)
        if names - allowed:
            raise ValueError(f"{kind}: {sentence!r} uses {sorted(names - allowed)}; "
                             f"allowed: {sorted(allowed) or 'none'}")


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
        for kind in PLAN_PLACEHOLDERS:
            _check_placeholders(kind, getattr(self, kind))
        return self


class DoseLine(Strict):
    """One sentence naming a dose, for a plan in minutes and for one in steps."""

    minutes: Sentence
    steps: Sentence

    @model_validator(mode="after")
    def _placeholders(self) -> DoseLine:
        for kind in ("minutes", "steps"):
            _check_placeholders(kind, [getattr(self, kind)])
        return self


class RuleWeek(Strict):
    """The plan under one rule, in place of its recommendation's words: no dose at all, and only these sections."""

    this_week: list[Sentence]
    sections: list[Sentence]  # the headings of the sections kept


class PlanText(Strict):
    """The take-home plan's sentences in one language."""

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


class ReadingLevel(Strict):
    """The reading level every text of a language is held to: a textstat measure and its bound, which each text meets
    as a whole and each of its sentences of `sentence_words` words or more meets alone (a shorter one, a heading
    or "Siga moviéndose cada día.", scores by its one longest word: the formulas are made for passages)."""

    measure: Literal["flesch_kincaid_grade", "fernandez_huerta"]
    max: float | None = None  # a grade: at most this
    min: float | None = None  # a reading ease: at least this
    sentence_words: int = Field(5, ge=1)

    @model_validator(mode="after")
    def _one_bound(self) -> ReadingLevel:
        if (self.max is None) == (self.min is None):
            raise ValueError("give either max (a grade) or min (a reading ease)")
        return self

    def passes(self, score: float) -> bool:
        return score <= self.max if self.max is not None else score >= (self.min or 0)

    def bound(self) -> str:
        return f"at most {self.max:g}" if self.max is not None else f"at least {self.min:g}"


class Catalogue(Strict):
    """Every sentence a patient reads, in one language (rules/patient-text/<language>.yaml)."""

    language: str
    name: Sentence  # the language's own name for itself
    fallback: Sentence  # said on the plan when it is in this language because we lack the patient's: {language}
    made_on: Sentence  # the day the plan was made: {date}
    reading: ReadingLevel
    forbidden_words: list[str] = []
    safety: dict[SafetyKey, Sentence]
    instructions: dict[Key, Sentence]
    goals: dict[Key, Sentence]
    plan: PlanText

    def instruction(self, key: str) -> str:
        """An instruction with its safety sentences written in; its other placeholders are left to fill."""
        return self._with_safety(self.instructions[key])

    def goal(self, key: str) -> str:
        return self._with_safety(self.goals[key])

    def _with_safety(self, text: str) -> str:
        return _FIELD.sub(lambda m: self.safety.get(m.group(1), m.group(0)), text)

    @cached_property
    def locale(self) -> Locale:
        return Locale.parse(self.language, sep="-")

    def number(self, value: float) -> str:
        """A whole number as the locale writes it (6,600 in English, 6600 and 16.600 in Spanish)."""
        return format_decimal(round(value), locale=self.locale)

    def day(self, value: date) -> str:
        return format_date(value, format="long", locale=self.locale)

    def texts(self) -> Iterator[tuple[str, str]]:
        """(where, text) of every text a patient reads, a unit as it is read: an instruction, a goal, a plan section
        with its heading, a recommendation's sentences for one kind of plan; safety sentences written in."""
        yield "fallback", self.fallback
        yield "made_on", self.made_on
        for key, text in self.safety.items():
            yield f"safety.{key}", text
        for key in self.instructions:
            yield f"instructions.{key}", self.instruction(key)
        for key in self.goals:
            yield f"goals.{key}", self.goal(key)
        plan = self.plan
        yield "plan.title, plan.intro", " ".join([plan.title + ".", *plan.intro])
        for index, section in enumerate(plan.sections):
            yield f"plan.sections[{index}]", " ".join([section.heading + ":", *section.sentences])
        yield "plan.no_plan_in_force", plan.no_plan_in_force
        for line in ("proposed", "agreed"):
            for kind in ("minutes", "steps"):
                yield f"plan.{line}.{kind}", getattr(getattr(plan, line), kind)
        for rule, words in plan.by_rule.items():
            yield f"plan.by_rule.{rule}", " ".join(words.this_week)
        for code, week in plan.this_week.items():
            for kind in PLAN_PLACEHOLDERS:
                yield f"plan.this_week.{code}.{kind}", " ".join(getattr(week, kind))


@dataclass(frozen=True)
class Choice:
    """The catalogue a patient's texts are written from, and why: `wanted` is the language the record asks for
    (None: it names none), `fallback` the sentence the plan says when that language is not one we have."""

    catalogue: Catalogue
    wanted: str | None = None
    fallback: str | None = None
    wanted_name: str | None = None  # the wanted language's name in English (and in itself), when we lack it


@dataclass(frozen=True)
class PatientTexts:
    """Every language's catalogue, by language tag; FALLBACK among them."""

    languages: dict[str, Catalogue] = field(default_factory=dict)

    @property
    def default(self) -> Catalogue:
        return self.languages[FALLBACK]

    def choose(self, wanted: str | None) -> Choice:
        """The catalogue for a BCP-47 tag: the tag itself, else its language (es-MX: es), else that language as
        CLDR names it (ISO 639's three-letter codes as records also send them: spa and es, eng and en), else English
        with a sentence naming the language in English and, where Babel knows it, in that language."""
        if not wanted:
            return Choice(self.default)
        tag = wanted.strip().lower().replace("_", "-")
        for candidate in (tag, tag.split("-", 1)[0], _cldr_language(tag)):
            if candidate in self.languages:
                return Choice(self.languages[candidate], wanted)
        default = self.default
        name = language_name(wanted, default.language)
        return Choice(default, wanted, default.fallback.format(language=name), name)


def _cldr_language(tag: str) -> str | None:
    """The language subtag CLDR gives a tag (spa: es, ger and deu: de, zh-Hant-TW: zh); None where it knows none."""
    try:
        return str(Locale.parse(tag, sep="-").language)
    except (ValueError, TypeError, UnknownLocaleError):
        return None


def language_name(tag: str, in_language: str) -> str:
    """A language's name in `in_language`, followed by its own name where Babel knows the language ("French
    (français)" for fr and fr-CA alike: the region does not change what the patient reads); the tag as written
    where Babel does not know it."""
    try:
        locale = Locale(Locale.parse(tag.strip().replace("_", "-"), sep="-").language)
    except (ValueError, TypeError, UnknownLocaleError):
        return tag.strip()[:40]
    outer = locale.get_display_name(Locale.parse(in_language, sep="-")) or tag
    own = locale.get_display_name(locale)
    return f"{outer} ({own})" if own and own.lower() != outer.lower() else outer


# ---------------------------------------------------------------- reading and checking the files


def load_patient_texts(rules_dir: Path, codes: Iterable[str], forbidden: Iterable[str] = (),
                       instruction_keys: Iterable[str] = (), goal_keys: Iterable[str] = ()) -> PatientTexts:
    """Read and check rules/patient-text/: each file's shape, the same keys, placeholders and sentence counts as
    English, a this-week text for every recommendation code, the instructions and goal texts the rules name, and no
    forbidden phrase (ruleset.yaml's and the file's own). Raises PatientTextError listing every problem."""
    folder = rules_dir / PATIENT_TEXT_DIR
    problems: list[str] = []
    raw: dict[str, Any] = {}
    languages: dict[str, Catalogue] = {}
    for path in sorted(folder.glob("*.yaml")):
        where = f"{PATIENT_TEXT_DIR}/{path.name}"
        try:
            data = read_yaml(path.read_text(encoding="utf-8"))
            catalogue = Catalogue.model_validate(data)
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            problems.append(f"{where}: {exc}")
            continue
        except ValidationError as exc:
            problems += [f"{where} {'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                         for e in exc.errors(include_url=False)]
            continue
        if catalogue.language != path.stem:
            problems.append(f"{where}: language {catalogue.language!r} differs from the file name")
            continue
        try:
            Locale.parse(catalogue.language, sep="-")
        except (ValueError, UnknownLocaleError):
            problems.append(f"{where}: {catalogue.language!r} is not a language tag Babel knows")
            continue
        raw[catalogue.language], languages[catalogue.language] = data, catalogue
    if FALLBACK not in languages:
        if not any(p.startswith(f"{PATIENT_TEXT_DIR}/{FALLBACK}.yaml") for p in problems):
            problems.append(f"{PATIENT_TEXT_DIR}/{FALLBACK}.yaml: missing; English is the language every patient "
                            "text falls back to")
        raise PatientTextError(problems)
    english = languages[FALLBACK]
    for code in sorted(set(codes) - set(english.plan.this_week)):
        problems.append(f"{PATIENT_TEXT_DIR}/{FALLBACK}.yaml plan.this_week: no text for {code}")
    for key in sorted(set(instruction_keys) - set(english.instructions)):
        problems.append(f"{PATIENT_TEXT_DIR}/{FALLBACK}.yaml instructions: no {key!r}, which a rule names")
    for key in sorted(set(goal_keys) - set(english.goals)):
        problems.append(f"{PATIENT_TEXT_DIR}/{FALLBACK}.yaml goals: no {key!r}, which a rule names")
    for language, data in raw.items():
        if language != FALLBACK:
            problems += [f"{PATIENT_TEXT_DIR}/{language}.yaml {p}" for p in differences(raw[FALLBACK], data)]
    for language, catalogue in languages.items():
        problems += [f"{PATIENT_TEXT_DIR}/{language}.yaml {p}"
                     for p in forbidden_phrases(catalogue, [*forbidden, *catalogue.forbidden_words])]
    if problems:
        raise PatientTextError(problems)
    return PatientTexts(languages)


def differences(english: Any, other: Any, where: str = "") -> list[str]:
    """What another language's file lacks or adds against English: a key, a sentence of a list, a placeholder."""
    here = where or "(top)"
    if isinstance(english, dict):
        if not isinstance(other, dict):
            return [f"{here}: a mapping in {FALLBACK}.yaml"]
        found = []
        for key in english.keys() - other.keys() - OWN_PARTS:
            found.append(f"{_join(where, key)}: missing (it is in {FALLBACK}.yaml)")
        for key in other.keys() - english.keys() - OWN_PARTS:
            found.append(f"{_join(where, key)}: not in {FALLBACK}.yaml")
        for key in english.keys() & other.keys() - OWN_PARTS:
            found += differences(english[key], other[key], _join(where, key))
        return sorted(found)
    if isinstance(english, list):
        if not isinstance(other, list):
            return [f"{here}: a list in {FALLBACK}.yaml"]
        if len(english) != len(other):
            return [f"{here}: {len(other)} entries where {FALLBACK}.yaml has {len(english)}; translate each one"]
        return [p for i, (a, b) in enumerate(zip(english, other)) for p in differences(a, b, f"{where}[{i}]")]
    if isinstance(english, str):
        if not isinstance(other, str):
            return [f"{here}: a text in {FALLBACK}.yaml"]
        if where.endswith("version"):
            return []
        mine, theirs = placeholders(english), _safe_placeholders(other)
        if theirs is None:
            return [f"{here}: not a valid text template"]
        if mine != theirs:
            return [f"{here}: fills in {sorted(theirs)} where {FALLBACK}.yaml fills in {sorted(mine)}"]
    return []


def _safe_placeholders(text: str) -> set[str] | None:
    try:
        return placeholders(text)
    except ValueError:
        return None


def _join(where: str, key: Any) -> str:
    return f"{where}.{key}" if where else str(key)


def forbidden_phrases(catalogue: Catalogue, patterns: list[str]) -> list[str]:
    """Every text of the catalogue that matches a forbidden phrase."""
    return [f"{where}: matches the forbidden words {pattern!r}; reword it"
            for where, text in catalogue.texts() for pattern in patterns
            if re.search(pattern, text, re.IGNORECASE)]
