"""The condition language of rules/: durable-rules JSON patterns, checked against the fact vocabulary, with
parameters written in; and the same patterns matched in Python (a rule's reasons)."""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cds.knowledge.schema import FactType, Parameter

PARAMETERS_FILE = "parameters.yaml"
COMPARISONS = {"$gt", "$gte", "$lt", "$lte", "$neq"}
EXISTENCE = {"$ex", "$nex"}
LOGIC = {"$and", "$or"}
TYPE_FIELD = "t"
COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "$gt": operator.gt, "$gte": operator.ge, "$lt": operator.lt, "$lte": operator.le, "$neq": operator.ne}


@dataclass
class Problems:
    items: list[str] = field(default_factory=list)

    def add(self, where: str, message: str) -> None:
        self.items.append(f"{where}: {message}")


# ---------------------------------------------------------------- conditions


def compile_conditions(conditions: dict[str, Any], facts: dict[str, FactType], parameters: dict[str, Parameter],
                        used: dict[str, float | int], problems: Problems, where: str) -> dict[str, Any]:
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
            compiled.append({alias: compile_pattern(pattern, facts[fact_type], parameters, used, problems, at)})
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


def compile_pattern(pattern: Any, fact: FactType, parameters: dict[str, Parameter],
                     used: dict[str, float | int], problems: Problems, at: str) -> Any:
    if not isinstance(pattern, dict) or len(pattern) != 1:
        problems.add(at, f"each test is a one-key object, not {pattern!r}")
        return pattern
    (key, value), = pattern.items()
    if key in LOGIC:
        if not isinstance(value, list) or not value:
            problems.add(at, f"{key} takes a non-empty list")
            return pattern
        return {key: [compile_pattern(p, fact, parameters, used, problems, at) for p in value]}
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


def _field(name: str, fact: FactType, at: str, problems: Problems) -> str | None:
    if name not in fact.fields:
        problems.add(at, f"field {name!r} is not in the fact vocabulary ({', '.join(sorted(fact.fields))})")
        return None
    return fact.fields[name].type


def _operand(name: str, operand: Any, fact: FactType, parameters: dict[str, Parameter],
             used: dict[str, float | int], problems: Problems, at: str, op: str) -> Any:
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
                 problems: Problems | None = None, where: str = "fact") -> dict[str, Any]:
    """Check a fact against the vocabulary; `{param: name, add: x}` values become the parameter's value + x."""
    problems = problems if problems is not None else Problems()
    out = dict(fact)  # only top-level values are replaced
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


def check_facts(facts: list[dict[str, Any]], vocabulary: dict[str, FactType]) -> list[str]:
    """Problems of facts handed to the engine (empty when every fact fits the vocabulary)."""
    problems = Problems()
    for index, fact in enumerate(facts):
        resolve_fact(fact, {}, vocabulary, problems, f"fact[{index}]")
    return problems.items


# ---------------------------------------------------------------- matching a compiled pattern


def matches(pattern: Any, fact: dict[str, Any]) -> bool:
    """Whether a fact passes a compiled pattern, as the engine decides it: a field the fact lacks never matches
    a test on it (only $nex)."""
    (key, value), = pattern.items()
    if key == "$and":
        return all(matches(p, fact) for p in value)
    if key == "$or":
        return any(matches(p, fact) for p in value)
    if key in EXISTENCE:
        (name, _), = value.items()
        return (name in fact) == (key == "$ex")
    if key in COMPARISONS:
        (name, operand), = value.items()
        return name in fact and COMPARE[key](fact[name], operand)
    return key in fact and fact[key] == value
