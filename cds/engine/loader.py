"""Load rules/: parse and validate every file, check every reference, substitute parameters into conditions.

Every problem found is reported at once, each naming its file and place, so an author fixes them in one pass.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from cds.engine.schema import (
    CodeLists,
    FactType,
    FactVocabulary,
    Parameter,
    ParameterFile,
    Rule,
    RuleFile,
    RuleSetInfo,
    Scenario,
    ScenarioFile,
)

RULESET_FILE = "ruleset.yaml"
PARAMETERS_FILE = "parameters.yaml"
FACTS_FILE = "facts.yaml"
CODES_FILE = "codes.yaml"
PATIENT_PLAN_FILE = "patient-plan.yaml"  # the patient's take-home plan texts (cds/charts/plan.py), not rules
SCENARIO_SUFFIX = ".scenarios.yaml"
COMPARISONS = {"$gt", "$gte", "$lt", "$lte", "$neq"}
EXISTENCE = {"$ex", "$nex"}
LOGIC = {"$and", "$or"}
TYPE_FIELD = "t"

M = TypeVar("M", bound=BaseModel)


class RuleError(Exception):
    """The knowledge in rules/ cannot be used; `problems` lists every reason."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class CompiledRule:
    """A rule ready for the engine: parameters substituted, with the file and services it belongs to."""

    rule: Rule
    file: str
    services: tuple[str, ...]
    conditions: dict[str, Any]
    parameters: dict[str, float | int]


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

    @property
    def version(self) -> str:
        """The rule set version with a digest of the files, so that any edit shows in audits and cards."""
        return f"{self.info.version}+{self.digest[:8]}"

    def rules_for(self, service_id: str) -> tuple[CompiledRule, ...]:
        return tuple(r for r in self.rules if service_id in r.services)

    def rule(self, rule_id: str) -> CompiledRule:
        return next(r for r in self.rules if r.rule.id == rule_id)

    @property
    def services(self) -> set[str]:
        return {s for r in self.rules for s in r.services}


@dataclass
class _Problems:
    items: list[str] = field(default_factory=list)

    def add(self, where: str, message: str) -> None:
        self.items.append(f"{where}: {message}")


def _read(path: Path, model: type[M], problems: _Problems) -> M | None:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        problems.add(path.name, f"cannot be read ({exc.strerror})")
        return None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path.name} line {mark.line + 1}" if mark else path.name
        problems.add(where, f"is not valid YAML ({getattr(exc, 'problem', exc)})")
        return None
    return _check(model, raw, path.name, problems)


def _read_parameters(path: Path, problems: _Problems) -> dict[str, Parameter] | None:
    """Each parameter validated on its own, so that one bad value does not hide the rules' problems."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
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


def _check(model: type[M], raw: Any, name: str, problems: _Problems) -> M | None:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        for err in exc.errors(include_url=False, include_input=False):
            loc = ".".join(str(p) for p in err["loc"])
            problems.add(f"{name} {loc}".strip(), str(err["msg"]).removeprefix("Value error, "))
        return None


def load_knowledge(rules_dir: Path, service_ids: Iterable[str] | None = None,
                   require_scenarios: bool = True) -> Knowledge:
    """Read and check rules_dir; raise RuleError listing every problem."""
    problems = _Problems()
    if not rules_dir.is_dir():
        raise RuleError([f"{rules_dir}: not a folder of rules"])
    info = _read(rules_dir / RULESET_FILE, RuleSetInfo, problems)
    parameters = _read_parameters(rules_dir / PARAMETERS_FILE, problems)
    vocabulary = _read(rules_dir / FACTS_FILE, FactVocabulary, problems)
    code_lists = _read(rules_dir / CODES_FILE, CodeLists, problems)
    special = {RULESET_FILE, PARAMETERS_FILE, FACTS_FILE, CODES_FILE, PATIENT_PLAN_FILE}
    rule_paths = sorted(p for p in rules_dir.glob("*.yaml") if p.name not in special
                        and not p.name.endswith(SCENARIO_SUFFIX))
    rule_files = {p.name: _read(p, RuleFile, problems) for p in rule_paths}
    scenario_files = {p.name: _read(p, ScenarioFile, problems)
                      for p in sorted(rules_dir.glob(f"*{SCENARIO_SUFFIX}"))}
    if not rule_paths:
        problems.add(str(rules_dir), "holds no rule files")
    if info is None or parameters is None or vocabulary is None or code_lists is None:
        raise RuleError(problems.items)

    facts = vocabulary.facts
    known_services = set(service_ids) if service_ids is not None else None
    compiled: list[CompiledRule] = []
    seen: dict[str, str] = {}
    for name, rule_file in rule_files.items():
        if rule_file is None:
            continue
        for service in rule_file.services:
            if known_services is not None and service not in known_services:
                problems.add(name, f"service {service!r} is not one of {sorted(known_services)}")
        for rule in rule_file.rules:
            where = f"{name} rule {rule.id}"
            if rule.id in seen:
                problems.add(where, f"id already used in {seen[rule.id]}")
            seen[rule.id] = name
            used: dict[str, float | int] = {}
            conditions = _compile_conditions(rule.conditions, facts, parameters, used, problems, where)
            _check_evidence(rule, used, parameters, problems, where)
            for placeholder in sorted(rule.conclude.placeholders() - set(rule_file.placeholders) - set(parameters)):
                problems.add(where, f"card text uses {{{placeholder}}}, which is neither a placeholder of "
                                    f"{name} nor a parameter")
            compiled.append(CompiledRule(rule, name, tuple(rule_file.services), conditions, used))

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

    scenarios: list[tuple[str, Scenario]] = []
    by_id = {c.rule.id: c for c in compiled}
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
            resolved = [resolve_fact(fact, parameters, facts, problems, f"{where} given[{i}]")
                        for i, fact in enumerate(scenario.given)]
            if scenario.expect is not None:
                for code in scenario.expect:
                    if code not in codes:
                        problems.add(where, f"expects {code!r}, which no rule concludes")
            scenarios.append((name, scenario.model_copy(update={"given": resolved})))
    if require_scenarios:
        for c in compiled:
            outcomes = {s.fires for _, s in scenarios if s.rule == c.rule.id}
            for fires, word in ((True, "fires"), (False, "does not fire")):
                if fires not in outcomes:
                    problems.add(f"{c.file} rule {c.rule.id}", f"has no scenario in which it {word}")
    if problems.items:
        raise RuleError(problems.items)
    digest = _digest(rules_dir)
    red_flag_values = facts["condition"].fields["red_flag"].values if "condition" in facts else None
    if red_flag_values is not None and set(code_lists.red_flags) != set(red_flag_values):
        raise RuleError([f"{CODES_FILE} red_flags: categories {sorted(code_lists.red_flags)} differ from "
                         f"{FACTS_FILE} condition.red_flag values {sorted(red_flag_values)}"])
    return Knowledge(info, dict(parameters), dict(facts), code_lists, tuple(compiled), tuple(scenarios), digest)


def _digest(rules_dir: Path) -> str:
    sha = hashlib.sha256()
    for path in sorted(rules_dir.glob("*.yaml")):
        # Scenarios and the patient's plan text do not change what the service answers.
        if not path.name.endswith(SCENARIO_SUFFIX) and path.name != PATIENT_PLAN_FILE:
            sha.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return sha.hexdigest()


def _check_evidence(rule: Rule, used: dict[str, float | int], parameters: dict[str, Parameter],
                    problems: _Problems, where: str) -> None:
    derived = sorted(name for name in used if getattr(parameters[name], "derived", False))
    if derived and not rule.evidence.derived:
        problems.add(where, f"uses derived parameters {derived}; set evidence.derived: true")
    if (derived or rule.evidence.derived) and "derived" not in rule.conclude.detail.lower():
        problems.add(where, "rests on a derived threshold; the card detail must say so (the word 'derived')")


# ---------------------------------------------------------------- conditions


def _compile_conditions(conditions: dict[str, Any], facts: dict[str, FactType], parameters: dict[str, Parameter],
                        used: dict[str, float | int], problems: _Problems, where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for join, expressions in conditions.items():
        if not isinstance(expressions, list) or not expressions:
            problems.add(where, f"conditions.{join} must be a non-empty list of named fact patterns")
            out[join] = []
            continue
        compiled = []
        for index, expression in enumerate(expressions):
            at = f"{where} conditions.{join}[{index}]"
            if not isinstance(expression, dict) or len(expression) != 1:
                problems.add(at, "must name one fact: {name: pattern}")
                continue
            (alias, pattern), = expression.items()
            if alias == "id" or alias.startswith("$"):
                problems.add(at, f"{alias!r} cannot name a fact")
                continue
            fact_type = _fact_type(pattern)
            if fact_type is None or fact_type not in facts:
                problems.add(at, f"pattern must require t: <fact type> with one of {sorted(facts)}")
                continue
            compiled.append({alias: _compile_pattern(pattern, facts[fact_type], parameters, used, problems, at)})
        out[join] = compiled
    return out


def _fact_type(pattern: Any) -> str | None:
    if isinstance(pattern, dict):
        if isinstance(pattern.get(TYPE_FIELD), str):
            return pattern[TYPE_FIELD]
        for part in pattern.get("$and", []) if isinstance(pattern.get("$and"), list) else []:
            found = _fact_type(part)
            if found:
                return found
    return None


def _compile_pattern(pattern: Any, fact: FactType, parameters: dict[str, Parameter],
                     used: dict[str, float | int], problems: _Problems, at: str) -> Any:
    if not isinstance(pattern, dict) or len(pattern) != 1:
        problems.add(at, f"each test is a one-key object, not {pattern!r}")
        return pattern
    (key, value), = pattern.items()
    if key in LOGIC:
        if not isinstance(value, list) or not value:
            problems.add(at, f"{key} takes a non-empty list")
            return pattern
        return {key: [_compile_pattern(p, fact, parameters, used, problems, at) for p in value]}
    if key in COMPARISONS or key in EXISTENCE:
        if not isinstance(value, dict) or len(value) != 1:
            problems.add(at, f"{key} takes one {{field: value}}")
            return pattern
        (name, operand), = value.items()
        if key in EXISTENCE:
            _field(name, fact, at, problems)
            return {key: {name: 1}}
        return {key: {name: _operand(name, operand, fact, parameters, used, problems, at, key)}}
    if key.startswith("$"):
        problems.add(at, f"operator {key} is not supported (use $and, $or, $gt, $gte, $lt, $lte, $neq, $ex, $nex)")
        return pattern
    if key == TYPE_FIELD:
        return pattern
    return {key: _operand(key, value, fact, parameters, used, problems, at, "equality")}


def _field(name: str, fact: FactType, at: str, problems: _Problems) -> str | None:
    if name not in fact.fields:
        problems.add(at, f"field {name!r} is not in the fact vocabulary ({', '.join(sorted(fact.fields))})")
        return None
    return fact.fields[name].type


def _operand(name: str, operand: Any, fact: FactType, parameters: dict[str, Parameter],
             used: dict[str, float | int], problems: _Problems, at: str, op: str) -> Any:
    kind = _field(name, fact, at, problems)
    if isinstance(operand, dict):
        if set(operand) != {"param"} or not isinstance(operand["param"], str):
            problems.add(at, f"{name}: the only object allowed as a value is {{param: <name>}} (no joins)")
            return operand
        pname = operand["param"]
        if pname not in parameters:
            problems.add(at, f"{name}: parameter {pname!r} is not in {PARAMETERS_FILE}")
            return 0
        if kind not in ("integer", "number"):
            problems.add(at, f"{name}: a numeric parameter cannot be compared with a {kind} field")
        used[pname] = parameters[pname].value
        return parameters[pname].value
    if isinstance(operand, bool):
        if kind != "boolean":
            problems.add(at, f"{name}: true/false compared with a {kind} field")
        return operand
    if isinstance(operand, (int, float)):
        problems.add(at, f"{name}: literal number {operand} in a rule; name a parameter with {{param: ...}}")
        return operand
    if isinstance(operand, str):
        values = fact.fields[name].values if kind else None
        if kind and kind != "string":
            problems.add(at, f"{name}: text compared with a {kind} field")
        elif values is not None and operand not in values:
            problems.add(at, f"{name}: {operand!r} is not one of {values}")
        if op in COMPARISONS and op != "$neq":
            problems.add(at, f"{name}: {op} on text")
        return operand
    problems.add(at, f"{name}: unsupported value {operand!r}")
    return operand


# ---------------------------------------------------------------- facts given by scenarios


def resolve_fact(fact: dict[str, Any], parameters: dict[str, Parameter], facts: dict[str, FactType],
                 problems: _Problems | None = None, where: str = "fact") -> dict[str, Any]:
    """Check a fact against the vocabulary; `{param: name, add: x}` values become the parameter's value + x."""
    problems = problems if problems is not None else _Problems()
    out = copy.deepcopy(fact)
    fact_type = fact.get(TYPE_FIELD)
    if fact_type not in facts:
        problems.add(where, f"t must be one of {sorted(facts)}")
        return out
    vocabulary = facts[fact_type].fields
    for name, value in fact.items():
        if name == TYPE_FIELD:
            continue
        if name not in vocabulary:
            problems.add(where, f"field {name!r} is not in the vocabulary of {fact_type}")
            continue
        if isinstance(value, dict) and "param" in value:
            pname = value["param"]
            if pname not in parameters or set(value) - {"param", "add"}:
                problems.add(where, f"{name}: {{param: <known parameter>, add: <number>}} expected")
                continue
            value = parameters[pname].value + value.get("add", 0)
            out[name] = round(value, 9)
        if not _type_ok(vocabulary[name].type, out[name]):
            problems.add(where, f"{name}: {out[name]!r} is not a {vocabulary[name].type}")
        elif (allowed := vocabulary[name].values) is not None and out[name] not in allowed:
            problems.add(where, f"{name}: {out[name]!r} is not one of {allowed}")
    return out


def _type_ok(kind: str, value: Any) -> bool:
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, str)


def check_facts(facts: list[dict[str, Any]], knowledge: Knowledge) -> list[str]:
    """Problems of facts handed to the engine (empty when every fact fits the vocabulary)."""
    problems = _Problems()
    for index, fact in enumerate(facts):
        resolve_fact(fact, {}, knowledge.facts, problems, f"fact[{index}]")
    return problems.items
