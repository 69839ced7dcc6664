"""Load rules/: parse and validate every file, check every reference, substitute parameters into conditions.

rules/ holds the shared files (ruleset, parameters, facts, codes, services, fixtures) and one folder per
recommendation: rule.yaml (the rules that conclude it) and scenarios.yaml. The end-to-end examples (complete
requests with their expected answers) are in fhir_examples/ at the top of the project, beside rules/, each owned by
the rules that name it in `examples:`; where that folder is, they are checked with the rules (cds/knowledge/
examples.py). Every problem found is reported at once, each naming its file and place, so an author fixes them in
one pass.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar, cast

import yaml
from pydantic import BaseModel, ValidationError

from cds.knowledge.conditions import (
    PARAMETERS_FILE,
    Problems,
    compile_conditions,
    compile_pattern,
    resolve_fact,
)
from cds.knowledge.examples import (
    EXPECTED_FILE,
    Example,
    check_examples,
    example_dirs,
    examples_folder,
    owners_of,
    read_examples,
)
from cds.knowledge.files import read_yaml
from cds.knowledge.patient_text import PatientTextError, PatientTexts, load_patient_texts
from cds.knowledge.schema import (
    CodeLists,
    FactType,
    FactVocabulary,
    FixtureFile,
    Parameter,
    ParameterFile,
    Rule,
    RuleFile,
    RuleSetInfo,
    Scenario,
    ScenarioFile,
    ServiceFile,
    Suggestion,
    ValueSet,
)
from cds.knowledge.statuses import StatusTable
from cds.knowledge.texts import render, render_problems

RULESET_FILE = "ruleset.yaml"
FACTS_FILE = "facts.yaml"
CODES_FILE = "codes.yaml"
SERVICES_FILE = "services.yaml"
FIXTURES_FILE = "fixtures.yaml"
RULE_FILE = "rule.yaml"
SCENARIO_FILE = "scenarios.yaml"
VALUE_SETS_DIR = "value-sets"
STATUSES_FILE = "statuses.yaml"
CODE_LIST = re.compile(r"(?<!\{)\{(loinc|snomed|pa):([a-z0-9_,]+)\}(?!\})")
STATUS_LIST = re.compile(r"(?<!\{)\{status:([a-z-]+)\}(?!\})")

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


class RuleError(Exception):
    """The knowledge in rules/ cannot be used; `problems` lists every reason."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class CompiledRule:
    """A rule ready for the engine: parameters substituted, with the file and services it belongs to. `rule` reads
    as it is shown: its title, plain text and evidence note with the parameters' values written in; `written` is the
    rule as its file has it (those texts naming the parameters), for the checks of `pacing-cds rules check`."""

    rule: Rule
    file: str
    services: tuple[str, ...]
    conditions: dict[str, Any]
    parameters: dict[str, float | int]
    words: dict[str, dict[str, str]] = field(default_factory=dict)
    reasons: tuple[tuple[dict[str, Any], str], ...] = ()  # (compiled `when`, text) of conclude.reasons
    written: Rule | None = None  # None: as `rule`

    @property
    def as_written(self) -> Rule:
        return self.written or self.rule


@dataclass(frozen=True)
class ValueSetIndex:
    """Which value sets a condition's codes fall in: SNOMED CT exactly, ICD-10-CM by prefix (dots ignored)."""

    snomed: dict[str, tuple[str, ...]]
    icd10: tuple[tuple[str, str], ...]  # (prefix without dots, value set id), longest first

    @classmethod
    def of(cls, value_sets: dict[str, ValueSet]) -> ValueSetIndex:
        snomed: dict[str, list[str]] = {}
        for vs in value_sets.values():
            for code in vs.snomed:
                snomed.setdefault(code.code, []).append(vs.id)
        prefixes = sorted(((p.prefix.replace(".", ""), vs.id) for vs in value_sets.values() for p in vs.icd10cm),
                          key=lambda item: -len(item[0]))
        return cls({k: tuple(v) for k, v in snomed.items()}, tuple(prefixes))

    def lookup(self, snomed: list[str], icd10: list[str]) -> dict[str, str]:
        """Value set id -> the condition's code that falls in it."""
        found: dict[str, str] = {}
        for code in snomed:
            for vs in self.snomed.get(code, ()):
                found.setdefault(vs, code)
        for code in icd10:
            bare = code.upper().replace(".", "")
            for prefix, vs in self.icd10:
                if bare.startswith(prefix):
                    found.setdefault(vs, code)
        return found


@dataclass(frozen=True)
class Knowledge:
    """Everything in rules/, validated."""

    info: RuleSetInfo
    parameters: dict[str, Parameter]
    facts: dict[str, FactType]
    codes: CodeLists
    rules: tuple[CompiledRule, ...]
    scenarios: tuple[tuple[str, Scenario], ...]
    digest: str
    service_file: ServiceFile
    prefetch: dict[str, str]  # key -> query, with the code lists of codes.yaml written out
    value_sets: dict[str, ValueSet] = field(default_factory=dict)
    value_set_index: ValueSetIndex = field(default_factory=lambda: ValueSetIndex({}, ()))
    statuses: StatusTable | None = None
    examples_dir: Path | None = None  # the fhir_examples/ checked with the rules; None: there was none beside them
    patient: PatientTexts = field(default_factory=PatientTexts)  # what the patient reads, by language

    def status_of(self, table: str, code: str | None) -> str:
        """What a FHIR status code means (rules/statuses.yaml): current, history, ignored, unconfirmed or unknown."""
        assert self.statuses is not None
        return self.statuses.of(table, code)

    @property
    def version(self) -> str:
        """The rule set version with a digest of the files, so that any edit shows in audits and cards."""
        return f"{self.info.version}+{self.digest[:8]}"

    def rules_for(self, service_id: str) -> tuple[CompiledRule, ...]:
        return self._rules_by_service.get(service_id, ())

    @cached_property
    def _rules_by_service(self) -> dict[str, tuple[CompiledRule, ...]]:
        return {s: tuple(r for r in self.rules if s in r.services) for s in {s for r in self.rules for s in r.services}}

    def rule(self, rule_id: str) -> CompiledRule:
        return self._rules_by_id[rule_id]

    @cached_property
    def _rules_by_id(self) -> dict[str, CompiledRule]:
        return {r.rule.id: r for r in self.rules}

    @property
    def services(self) -> set[str]:
        return {s for r in self.rules for s in r.services}

    @cached_property
    def example_owners(self) -> dict[str, tuple[str, ...]]:
        """Example name -> the ids of the rules that own it (name it in their `examples:`)."""
        return owners_of(self.rules)

    def examples(self) -> list[Example]:
        """The examples of `examples_dir` by name, each with the rules that own it; none without the folder."""
        return read_examples(self.examples_dir, self.example_owners) if self.examples_dir is not None else []

    @cached_property
    def values(self) -> Mapping[str, float | int]:
        """Every parameter's value by name, read-only: built once, shared by every call."""
        return MappingProxyType(self._values)

    def derived(self, name: str, build: Callable[[Knowledge], T]) -> T:
        """What a reader of the knowledge builds from it once, by name (the cards' numbers): the knowledge does not
        change once loaded, so neither does what is built from it. Two threads may both build it; one is kept."""
        built = self._derived
        if name not in built:
            built[name] = build(self)
        return cast(T, built[name])

    @cached_property
    def _derived(self) -> dict[str, Any]:
        return {}

    @cached_property
    def _values(self) -> dict[str, float | int]:
        return {name: p.value for name, p in self.parameters.items()}


def _name(path: Path) -> str:
    """A file as an author finds it: the folder too, for the files every folder has."""
    nested = path.name in (RULE_FILE, SCENARIO_FILE) or path.parent.name == VALUE_SETS_DIR
    return f"{path.parent.name}/{path.name}" if nested else path.name


def _read(path: Path, model: type[M], problems: Problems) -> M | None:
    try:
        raw = read_yaml(path.read_text(encoding="utf-8"))
    except OSError as exc:
        problems.add(_name(path), f"cannot be read ({exc.strerror})")
        return None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{_name(path)} line {mark.line + 1}" if mark else _name(path)
        problems.add(where, f"is not valid YAML ({getattr(exc, 'problem', exc)})")
        return None
    return _check(model, raw, _name(path), problems)


def _read_parameters(path: Path, problems: Problems) -> dict[str, Parameter] | None:
    """Each parameter validated on its own, so that one bad value does not hide the rules' problems."""
    try:
        raw = read_yaml(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        _read(path, ParameterFile, problems)  # reports the read or YAML error
        return None
    if not isinstance(raw, dict) or not isinstance(raw.get("parameters"), dict):
        _read(path, ParameterFile, problems)
        return None
    shell = {k: v for k, v in raw.items() if k != "parameters"}
    if _check(ParameterFile, {**shell, "parameters": {}}, path.name, problems) is None:
        return None
    parameters: dict[str, Parameter] = {}
    for name, body in raw["parameters"].items():
        checked = _check(ParameterFile, {**shell, "parameters": {name: body}}, path.name, problems)
        if checked is not None:
            parameters.update(checked.parameters)
        elif isinstance(body, dict) and isinstance(body.get("value"), (int, float)):
            parameters[name] = Parameter.model_construct(**body)  # keep checking the rules that use it
    return parameters


def _check(model: type[M], raw: Any, name: str, problems: Problems) -> M | None:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        for err in exc.errors(include_url=False, include_input=False):
            loc = ".".join(str(p) for p in err["loc"])
            problems.add(f"{name} {loc}".strip(), str(err["msg"]).removeprefix("Value error, "))
        return None


def load_ruleset_info(rules_dir: Path) -> RuleSetInfo:
    """ruleset.yaml alone (name, code systems, override reasons), for readers that need no rules."""
    problems = Problems()
    info = _read(rules_dir / RULESET_FILE, RuleSetInfo, problems)
    if info is None:
        raise RuleError(problems.items)
    return info


def rule_folders(rules_dir: Path) -> list[Path]:
    """The recommendation folders of rules_dir: every sub-folder holding a rule file."""
    return sorted(p.parent for p in rules_dir.glob(f"*/{RULE_FILE}"))


def load_knowledge(rules_dir: Path, service_ids: Iterable[str] | None = None,
                   require_scenarios: bool = True) -> Knowledge:
    """Read and check rules_dir; raise RuleError listing every problem.

    A rule set read before in this process, from files with the same content, is not read again: parsing and checking
    take about half a second, which every app, command and worker built in one process paid anew. The content of
    every file the reading uses is the key, so an edited file is read afresh."""
    if not rules_dir.is_dir():
        raise RuleError([f"{rules_dir}: not a folder of rules"])
    key = (_sources(rules_dir), None if service_ids is None else tuple(sorted(service_ids)), require_scenarios)
    knowledge = _LOADED.get(key)
    if knowledge is None:
        knowledge = _LOADED[key] = _load_knowledge(rules_dir, service_ids, require_scenarios)
        while len(_LOADED) > _LOADED_MAX:
            del _LOADED[next(iter(_LOADED))]
    return knowledge


# Rule sets read in this process, by what they were read from (the oldest goes first past the bound).
_LOADED: dict[tuple[str, tuple[str, ...] | None, bool], Knowledge] = {}
_LOADED_MAX = 8


def _sources(rules_dir: Path) -> str:
    """A digest of what reading `rules_dir` uses: its folder, the name and content of every file under it, and the
    example folders beside it with their expected.json."""
    sha = hashlib.sha256(str(rules_dir.resolve()).encode() + b"\0")
    for path in sorted(p for p in rules_dir.rglob("*") if p.is_file()):
        sha.update(str(path.relative_to(rules_dir)).encode() + b"\0" + path.read_bytes() + b"\0")
    examples_dir = examples_folder(rules_dir)
    if examples_dir is not None:
        for folder in example_dirs(examples_dir):
            expected = folder / EXPECTED_FILE
            sha.update(folder.name.encode() + b"\0"
                       + (expected.read_bytes() if expected.is_file() else b"(none)") + b"\0")
    return sha.hexdigest()


def _load_knowledge(rules_dir: Path, service_ids: Iterable[str] | None, require_scenarios: bool) -> Knowledge:
    problems = Problems()
    info = _read(rules_dir / RULESET_FILE, RuleSetInfo, problems)
    parameters = _read_parameters(rules_dir / PARAMETERS_FILE, problems)
    vocabulary = _read(rules_dir / FACTS_FILE, FactVocabulary, problems)
    code_lists = _read(rules_dir / CODES_FILE, CodeLists, problems)
    service_file = _read(rules_dir / SERVICES_FILE, ServiceFile, problems)
    fixture_file = _read(rules_dir / FIXTURES_FILE, FixtureFile, problems)
    statuses = _read(rules_dir / STATUSES_FILE, StatusTable, problems)
    value_sets = _read_value_sets(rules_dir / VALUE_SETS_DIR, problems)
    folders = rule_folders(rules_dir)
    rule_files = {f"{d.name}/{RULE_FILE}": _read(d / RULE_FILE, RuleFile, problems) for d in folders}
    scenario_files = {f"{d.name}/{SCENARIO_FILE}": _read(d / SCENARIO_FILE, ScenarioFile, problems)
                      for d in folders if (d / SCENARIO_FILE).exists()}
    if not folders:
        problems.add(str(rules_dir), f"holds no recommendation folder (<code>/{RULE_FILE})")
    if None in (info, parameters, vocabulary, code_lists, service_file, fixture_file, statuses):
        raise RuleError(problems.items)
    assert info and parameters is not None and vocabulary and code_lists and service_file and fixture_file
    assert statuses is not None
    known = {s.id for s in service_file.services}
    if service_ids is not None and set(service_ids) != known:
        problems.add(SERVICES_FILE, f"services {sorted(known)} differ from {sorted(service_ids)}")
    prefetch = _expand_prefetch(service_file, code_lists, statuses, problems)
    for value_set in value_sets.values():
        if value_set.note_after is not None and value_set.note_after not in parameters:
            problems.add(f"{VALUE_SETS_DIR}/{value_set.id}.yaml", f"note_after {value_set.note_after!r} is not a "
                                                                  f"parameter of {PARAMETERS_FILE}")
    if value_sets and code_lists.eligibility_value_set not in value_sets:
        problems.add(CODES_FILE, f"eligibility_value_set {code_lists.eligibility_value_set!r} is not a value set of "
                                 f"{VALUE_SETS_DIR}/")
    codes = {d.name for d in folders}
    for code in info.needs_action:
        if code not in codes:
            problems.add(RULESET_FILE, f"needs_action {code!r} is not a recommendation code (a folder of "
                                       f"{rules_dir.name}/)")
    for value_set in value_sets.values():
        for other in value_set.disjoint_from:
            if other not in value_sets:
                problems.add(f"{VALUE_SETS_DIR}/{value_set.id}.yaml", f"disjoint_from {other!r} is not a value set "
                                                                      f"of {VALUE_SETS_DIR}/")
        for code in sorted(set(value_set.note_not_with) - codes):
            problems.add(f"{VALUE_SETS_DIR}/{value_set.id}.yaml", f"note_not_with {code!r} is not a recommendation "
                                                                  f"code (a folder of {rules_dir.name}/)")
    _check_words(rule_files, info.forbidden_words, problems)
    patient = _patient_texts(rules_dir, codes, rule_files, info.forbidden_words, problems)
    compiled = _compile_rules(rule_files, vocabulary.facts, parameters, known, patient, problems)
    scenarios = _scenarios(scenario_files, compiled, parameters, vocabulary.facts, fixture_file, problems,
                           require_scenarios)
    examples_dir = examples_folder(rules_dir)
    if examples_dir is not None:
        check_examples(compiled, examples_dir, problems)
    if problems.items:
        raise RuleError(problems.items)
    listed = vocabulary.facts["condition"].fields["value_set"].values if "condition" in vocabulary.facts else None
    if listed is not None and set(listed) != set(value_sets):
        raise RuleError([f"{VALUE_SETS_DIR}/: value sets {sorted(value_sets)} differ from {FACTS_FILE} "
                         f"condition.value_set values {sorted(listed)}"])
    return Knowledge(info, dict(parameters), dict(vocabulary.facts), code_lists, tuple(compiled), tuple(scenarios),
                     _digest(rules_dir), service_file, prefetch, value_sets, ValueSetIndex.of(value_sets), statuses,
                     examples_dir, patient or PatientTexts())


def _patient_texts(rules_dir: Path, codes: set[str], rule_files: dict[str, RuleFile | None], forbidden: list[str],
                   problems: Problems) -> PatientTexts | None:
    """rules/patient-text/, checked against the recommendation codes and the texts the rules name."""
    suggestions = [s for f in rule_files.values() if f for r in f.rules for s in r.conclude.suggest]
    try:
        return load_patient_texts(rules_dir, codes, forbidden,
                                  {s.instruction for s in suggestions if s.instruction},
                                  {s.goal_text for s in suggestions if s.goal_text})
    except PatientTextError as exc:
        problems.items.extend(exc.problems)
        return None


def _check_words(rule_files: dict[str, RuleFile | None], forbidden: list[str], problems: Problems) -> None:
    """No card or patient text may match the unsafe advice the rule set forbids (ruleset.yaml forbidden_words)."""
    for name, rule_file in rule_files.items():
        for rule in rule_file.rules if rule_file else []:
            conclude = rule.conclude
            texts = [conclude.summary, conclude.detail, *(t for s in conclude.suggest for t in s.texts())]
            for pattern in forbidden:
                if any(re.search(pattern, text, re.IGNORECASE) for text in texts):
                    problems.add(f"{name} rule {rule.id}", f"its words match the forbidden words {pattern!r}")


def _read_value_sets(folder: Path, problems: Problems) -> dict[str, ValueSet]:
    value_sets: dict[str, ValueSet] = {}
    for path in sorted(folder.glob("*.yaml")):
        value_set = _read(path, ValueSet, problems)
        if value_set is None:
            continue
        if value_set.id != path.stem:
            problems.add(f"{VALUE_SETS_DIR}/{path.name}", f"id {value_set.id!r} differs from the file name")
        value_sets[value_set.id] = value_set
    return value_sets


def _expand_prefetch(service_file: ServiceFile, codes: CodeLists, statuses: StatusTable,
                     problems: Problems) -> dict[str, str]:
    """Write out the {loinc:a,b} and {snomed:list} code lists of each prefetch query from codes.yaml, and the
    {status:table} lists from statuses.yaml (the codes a reader uses: current, history, unconfirmed)."""
    def expand(match: re.Match[str], key: str) -> str:
        system, names = match.group(1), match.group(2).split(",")
        found: list[str] = []
        for name in names:
            items = codes.observations.get(name) if system == "loinc" else getattr(codes, name, None)
            if not isinstance(items, list):
                problems.add(f"{SERVICES_FILE} prefetch.{key}", f"{system}:{name} is not a code list of {CODES_FILE}")
                continue
            found += items
        return ",".join(f"{codes.systems[system]}|{code}" for code in found)

    def status(match: re.Match[str], key: str) -> str:
        table = statuses.tables.get(match.group(1))
        if table is None:
            problems.add(f"{SERVICES_FILE} prefetch.{key}",
                         f"status:{match.group(1)} is not a table of {STATUSES_FILE}")
            return ""
        return ",".join(table.kept())

    return {key: STATUS_LIST.sub(lambda m, key=key: status(m, key),  # type: ignore[misc]
                                 CODE_LIST.sub(lambda m, key=key: expand(m, key), query))  # type: ignore[misc]
            for key, query in service_file.prefetch.items()}


def _compile_rules(rule_files: dict[str, RuleFile | None], facts: dict[str, FactType],
                   parameters: dict[str, Parameter], known_services: set[str], patient: PatientTexts | None,
                   problems: Problems) -> list[CompiledRule]:
    compiled: list[CompiledRule] = []
    seen: dict[str, str] = {}
    for name, rule_file in rule_files.items():
        if rule_file is None:
            continue
        folder = name.split("/", 1)[0]
        for service in rule_file.services:
            if service not in known_services:
                problems.add(name, f"service {service!r} is not one of {sorted(known_services)}")
        for rule in rule_file.rules:
            where = f"{name} rule {rule.id}"
            if rule.id in seen:
                problems.add(where, f"id already used in {seen[rule.id]}")
            seen[rule.id] = name
            if rule.conclude.code != folder:
                problems.add(where, f"concludes {rule.conclude.code!r}; the rules of folder {folder}/ conclude "
                                    f"{folder!r} (one folder per recommendation)")
            used: dict[str, float | int] = {}
            conditions = compile_conditions(rule.conditions, facts, parameters, used, problems, where)
            reasons = tuple((compile_pattern(reason.when, facts["patient"], parameters, {}, problems,
                                              f"{where} reasons[{i}]"), reason.text)
                            for i, reason in enumerate(rule.conclude.reasons)) if "patient" in facts else ()
            _check_evidence(rule, used, parameters, problems, where)
            known_words = set(rule_file.placeholders) | set(rule_file.words) | set(parameters)
            for placeholder in sorted(rule.conclude.placeholders() - known_words):
                problems.add(where, f"card text uses {{{placeholder}}}, which is neither a placeholder of "
                                    f"{name} nor a parameter")
            for index, suggestion in enumerate(rule.conclude.suggest):
                for placeholder in sorted(suggestion.unknown_placeholders(parameters,
                                                                           _patient_words(suggestion, patient))):
                    problems.add(f"{where} suggest[{index}]", f"uses {{{placeholder}}}, which a {suggestion.kind} "
                                                              "suggestion does not provide")
            shown = _shown(rule, {n: p.value for n, p in parameters.items()}, problems, where)
            compiled.append(CompiledRule(shown, name, tuple(rule_file.services), conditions, used,
                                         dict(rule_file.words), reasons, rule))
    codes = {c.rule.conclude.code for c in compiled}
    for c in compiled:
        for code in c.rule.suppressed_by:
            if code not in codes:
                problems.add(f"{c.file} rule {c.rule.id}", f"suppressed_by {code!r}, which no rule concludes")
    used_by_rules = {name for c in compiled for name in c.parameters}
    for name, parameter in parameters.items():
        used_by = getattr(parameter, "used_by", None) or ["rules"]  # a parameter that failed validation
        if "rules" in used_by and name not in used_by_rules:
            problems.add(f"{PARAMETERS_FILE} {name}", "says used_by rules, but no rule uses it")
        if "rules" not in used_by and name in used_by_rules:
            problems.add(f"{PARAMETERS_FILE} {name}", "is used by a rule; add rules to used_by")
    return compiled


def _patient_words(suggestion: Suggestion, patient: PatientTexts | None) -> list[str]:
    """The English texts a suggestion names (every language fills in the same placeholders)."""
    if patient is None:
        return []
    english = patient.default
    return [*([english.instruction(suggestion.instruction)] if suggestion.instruction in english.instructions else []),
            *([english.goal(suggestion.goal_text)] if suggestion.goal_text in english.goals else [])]


def _scenarios(scenario_files: dict[str, ScenarioFile | None], compiled: list[CompiledRule],
               parameters: dict[str, Parameter], facts: dict[str, FactType], fixtures: FixtureFile,
               problems: Problems, require_scenarios: bool) -> list[tuple[str, Scenario]]:
    scenarios: list[tuple[str, Scenario]] = []
    by_id = {c.rule.id: c for c in compiled}
    codes = {c.rule.conclude.code for c in compiled}
    for name, scenario_file in scenario_files.items():
        if scenario_file is None:
            continue
        for scenario in scenario_file.scenarios:
            where = f"{name} scenario {scenario.name!r}"
            target = by_id.get(scenario.rule)
            if target is None:
                problems.add(where, f"names rule {scenario.rule!r}, which does not exist")
                continue
            if scenario.service is not None and scenario.service not in target.services:
                problems.add(where, f"service {scenario.service!r} does not use rule {scenario.rule}")
            resolved = [resolve_fact(_like(fact, fixtures, problems, f"{where} given[{i}]"), parameters, facts,
                                     problems, f"{where} given[{i}]")
                        for i, fact in enumerate(scenario.given)]
            for code in scenario.expect or []:
                if code not in codes:
                    problems.add(where, f"expects {code!r}, which no rule concludes")
            scenarios.append((name, scenario.model_copy(update={"given": resolved})))
    if require_scenarios:
        for c in compiled:
            outcomes = {s.fires for _, s in scenarios if s.rule == c.rule.id}
            for fires, word in ((True, "fires"), (False, "does not fire")):
                if fires not in outcomes:
                    problems.add(f"{c.file} rule {c.rule.id}", f"has no scenario in which it {word}")
    return scenarios


def _like(fact: dict[str, Any], fixtures: FixtureFile, problems: Problems, where: str) -> dict[str, Any]:
    """`like: <fixture>` starts the fact from a named fixture; the other fields replace the fixture's, and a field
    given as null is left out (a fact without it, as when it cannot be computed)."""
    if "like" not in fact:
        return fact
    base = fixtures.fixtures.get(fact["like"])
    if base is None:
        problems.add(where, f"like {fact['like']!r} is not a fixture of {FIXTURES_FILE}")
        return {k: v for k, v in fact.items() if k != "like"}
    merged = {**base, **{k: v for k, v in fact.items() if k != "like"}}
    return {k: v for k, v in merged.items() if v is not None}


def _digest(rules_dir: Path) -> str:
    """What the service answers with: every rules file but scenarios and fixtures."""
    sha = hashlib.sha256()
    for path in sorted(rules_dir.rglob("*.yaml")):
        relative = path.relative_to(rules_dir)
        # Scenarios and fixtures do not change what the service answers.
        if relative.name in (SCENARIO_FILE, FIXTURES_FILE):
            continue
        sha.update(str(relative).encode() + b"\0" + path.read_bytes() + b"\0")
    return sha.hexdigest()


# The texts of a rule that name parameters as {name} and are shown with their values (GET /rules, reports, diffs).
SHOWN_TEXTS = ("title", "plain.when", "plain.then", "evidence.note")


def shown_texts(rule: Rule) -> list[tuple[str, str]]:
    """(field, text) of each text of SHOWN_TEXTS the rule has."""
    found = [("title", rule.title), ("plain.when", rule.plain.when), ("plain.then", rule.plain.then)]
    return found + ([("evidence.note", rule.evidence.note)] if rule.evidence.note is not None else [])


def _shown(rule: Rule, values: dict[str, float | int], problems: Problems, where: str) -> Rule:
    """The rule with its shown texts rendered with the parameters' values; each text that names anything but a
    parameter, or cannot be rendered, is a problem (and kept as written)."""
    rendered: dict[str, str] = {}
    for name, text in shown_texts(rule):
        found = render_problems(text, values)
        for problem in found:
            problems.add(f"{where} {name}", f"{problem}; only parameters may be named in it, as {{name}} or "
                                             f"{{name:.0%}}")
        rendered[name] = text if found else render(text, values)
    if all(rendered[name] == text for name, text in shown_texts(rule)):
        return rule
    update: dict[str, Any] = {
        "title": rendered["title"],
        "plain": rule.plain.model_copy(update={"when": rendered["plain.when"], "then": rendered["plain.then"]})}
    if "evidence.note" in rendered:
        update["evidence"] = rule.evidence.model_copy(update={"note": rendered["evidence.note"]})
    return rule.model_copy(update=update)


def _check_evidence(rule: Rule, used: dict[str, float | int], parameters: dict[str, Parameter],
                    problems: Problems, where: str) -> None:
    derived = sorted(name for name in used if getattr(parameters[name], "derived", False))
    if derived and not rule.evidence.derived:
        problems.add(where, f"uses derived parameters {derived}; set evidence.derived: true")
    marked = " ".join([rule.conclude.detail, *(r.text for r in rule.conclude.reasons)])
    if (derived or rule.evidence.derived) and "†" not in marked:
        problems.add(where, "rests on a derived threshold; the card must mark it with a dagger (†), which the "
                            "footnote explains")
