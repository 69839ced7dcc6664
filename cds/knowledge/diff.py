"""What differs between two rule sets, for the CDS committee reading the impact of a change: the parameters, the
rules, the value sets and the shared files, compared on the loaded models rather than on the text, so that a file
reformatted or reordered differs in nothing and every difference is named in the words of the rule format.

Pure: two loaded rule sets in, the differences out.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel

from cds.knowledge.loader import (
    CODES_FILE,
    FACTS_FILE,
    RULESET_FILE,
    SERVICES_FILE,
    STATUSES_FILE,
    CompiledRule,
    Knowledge,
)
from cds.knowledge.schema import Parameter, ValueSet

Status = Literal["added", "removed", "changed"]
SHOWN_LEAVES = 4  # the differences of a rule's conditions named one by one; the rest are counted
SHORT = 60  # characters of a value shown in a difference
_ABSENT = object()  # a key or an item one side does not have


@dataclass(frozen=True)
class ParameterChange:
    """A parameter added, removed, or changed (its value, unit, range or words), with both versions."""

    name: str
    before: Parameter | None
    after: Parameter | None
    what: tuple[str, ...] = ()  # of a changed one: each field that differs, as "field: before → after"

    @property
    def status(self) -> Status:
        return "added" if self.before is None else "removed" if self.after is None else "changed"


@dataclass(frozen=True)
class RuleChange:
    """A rule added, removed, or changed: its versions on either side and what differs, in a few words each."""

    rule_id: str
    status: Status
    version_before: str | None
    version_after: str | None
    what: tuple[str, ...] = ()


@dataclass(frozen=True)
class ValueSetChange:
    """A value set added, removed, or changed: the codes it gained and lost, and the other fields that differ."""

    value_set: str
    status: Status
    what: tuple[str, ...] = ()


@dataclass(frozen=True)
class RuleSetDiff:
    """Every difference between two rule sets; `files`: the shared files (ruleset, codes, facts, services,
    statuses) whose content differs."""

    parameters: tuple[ParameterChange, ...]
    rules: tuple[RuleChange, ...]
    value_sets: tuple[ValueSetChange, ...]
    files: tuple[str, ...]

    @property
    def empty(self) -> bool:
        return not (self.parameters or self.rules or self.value_sets or self.files)


def diff_knowledge(before: Knowledge, after: Knowledge) -> RuleSetDiff:
    """What differs from the rule set `before` to `after`."""
    shared = ((RULESET_FILE, before.info, after.info), (CODES_FILE, before.codes, after.codes),
              (FACTS_FILE, before.facts, after.facts), (SERVICES_FILE, before.service_file, after.service_file),
              (STATUSES_FILE, before.statuses, after.statuses))
    return RuleSetDiff(diff_parameters(before.parameters, after.parameters), diff_rules(before.rules, after.rules),
                       diff_value_sets(before.value_sets, after.value_sets),
                       tuple(name for name, old, new in shared if old != new))


def diff_parameters(before: Mapping[str, Parameter], after: Mapping[str, Parameter]) -> tuple[ParameterChange, ...]:
    """The parameters that differ, by name."""
    changes = []
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name), after.get(name)
        if old is None or new is None:
            changes.append(ParameterChange(name, old, new))
        elif old != new:
            changes.append(ParameterChange(name, old, new, tuple(_fields(old, new))))
    return tuple(changes)


def diff_rules(before: Iterable[CompiledRule], after: Iterable[CompiledRule]) -> tuple[RuleChange, ...]:
    """The rules that differ, by id: what changed in each (version, mode, kind, precedence, services, conditions
    leaf by leaf, the conclusion's code, indicator and dose, the names of the card texts and of the rule file's
    words that changed, the title and plain text as they read with each side's parameters, the evidence and the
    examples)."""
    old, new = {c.rule.id: c for c in before}, {c.rule.id: c for c in after}
    changes = []
    for rule_id in sorted(set(old) | set(new)):
        was, will = old.get(rule_id), new.get(rule_id)
        if will is None:
            assert was is not None
            changes.append(RuleChange(rule_id, "removed", was.rule.version, None))
        elif was is None:
            changes.append(RuleChange(rule_id, "added", None, will.rule.version))
        else:
            what = _rule_differences(was, will)
            if what:
                changes.append(RuleChange(rule_id, "changed", was.rule.version, will.rule.version, tuple(what)))
    return tuple(changes)


def diff_value_sets(before: Mapping[str, ValueSet], after: Mapping[str, ValueSet]) -> tuple[ValueSetChange, ...]:
    """The value sets that differ, by id: the SNOMED CT codes and ICD-10-CM prefixes each gained and lost, and the
    names of its other fields that changed."""
    changes = []
    for value_set in sorted(set(before) | set(after)):
        old, new = before.get(value_set), after.get(value_set)
        if old is None or new is None:
            changes.append(ValueSetChange(value_set, "added" if old is None else "removed"))
            continue
        what: list[str] = []
        for system, attribute, key in (("SNOMED CT", "snomed", "code"), ("ICD-10-CM", "icd10cm", "prefix")):
            was = {getattr(entry, key) for entry in getattr(old, attribute)}
            will = {getattr(entry, key) for entry in getattr(new, attribute)}
            what += [f"{system} {code} removed" for code in sorted(was - will)]
            what += [f"{system} {code} added" for code in sorted(will - was)]
        what += [name for name in type(old).model_fields
                 if name not in ("snomed", "icd10cm") and getattr(old, name) != getattr(new, name)]
        if what or old != new:
            changes.append(ValueSetChange(value_set, "changed", tuple(what or ["the order of its codes"])))
    return tuple(changes)


def _rule_differences(was: CompiledRule, will: CompiledRule) -> list[str]:
    old, new = was.rule, will.rule
    what = [f"{name} {_short(getattr(old, name))} → {_short(getattr(new, name))}"
            for name in ("version", "mode", "kind", "precedence", "suppressed_by")
            if getattr(old, name) != getattr(new, name)]
    if was.services != will.services:
        what.append(f"services {', '.join(was.services)} → {', '.join(will.services)}")
    words = [name for name in dict.fromkeys([*was.words, *will.words]) if was.words.get(name) != will.words.get(name)]
    leaves = list(_leaves(old.conditions, new.conditions, "conditions"))
    what += [_leaf_text(*leaf) for leaf in leaves[:SHOWN_LEAVES]]
    if len(leaves) > SHOWN_LEAVES:
        what.append(f"and {len(leaves) - SHOWN_LEAVES} more differences in conditions")
    what += [f"conclude.{name} {_short(getattr(old.conclude, name))} → {_short(getattr(new.conclude, name))}"
             for name in ("code", "indicator", "dose", "selection")
             if getattr(old.conclude, name) != getattr(new.conclude, name)]
    texts = [name for name in type(old.conclude).model_fields
             if name not in ("code", "indicator", "dose", "selection")
             and getattr(old.conclude, name) != getattr(new.conclude, name)]
    if texts or words:
        what.append("card text: " + ", ".join(texts + [f"words.{name}" for name in words]))
    what += [_text_change(name, a, b) for name, a, b in (("title", old.title, new.title),
                                                         ("plain.when", old.plain.when, new.plain.when),
                                                         ("plain.then", old.plain.then, new.plain.then)) if a != b]
    if old.evidence != new.evidence:
        what.append("evidence")
    if old.examples != new.examples:
        what.append("examples")
    return what


def _text_change(name: str, old: str, new: str) -> str:
    """A rule text changed, as it reads (parameters written in), from a little before its first difference."""
    start = next((i for i, (a, b) in enumerate(zip(old, new)) if a != b), min(len(old), len(new)))
    start = old.rfind(" ", 0, max(start - 12, 0)) + 1 if start > 20 else 0
    return f"{name} {_short_text(old[start:], start)} → {_short_text(new[start:], start)}"


def _short_text(text: str, start: int) -> str:
    text = ("…" if start else "") + text
    return text if len(text) <= SHORT else text[:SHORT - 1] + "…"


def _fields(old: BaseModel, new: BaseModel) -> Iterator[str]:
    """Each field that differs between two models of one type, as "field: before → after"."""
    for name in type(old).model_fields:
        a, b = getattr(old, name), getattr(new, name)
        if a != b:
            yield f"{name}: {_short(a)} → {_short(b)}"


def _leaves(old: Any, new: Any, path: str) -> Iterator[tuple[str, Any, Any]]:
    """The places where two JSON-like values differ, as deep as both sides keep the same shape: a key one side
    lacks, and the items a list of another length lost or gained, have _ABSENT on the other side."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in dict.fromkeys([*old, *new]):
            yield from _leaves(old.get(key, _ABSENT), new.get(key, _ABSENT), f"{path}.{key}")
    elif isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for index, (a, b) in enumerate(zip(old, new, strict=True)):
            yield from _leaves(a, b, f"{path}[{index}]")
    elif isinstance(old, list) and isinstance(new, list):
        yield from ((path, item, _ABSENT) for item in old if item not in new)
        yield from ((path, _ABSENT, item) for item in new if item not in old)
    elif old != new:
        yield path, old, new


def _leaf_text(path: str, old: Any, new: Any) -> str:
    if old is _ABSENT:
        return f"{path}: added {_short(new)}"
    if new is _ABSENT:
        return f"{path}: removed {_short(old)}"
    return f"{path}: {_short(old)} → {_short(new)}"


def _short(value: Any) -> str:
    """A value in a few characters: absent as (none), text as written, anything else as compact JSON."""
    if value is _ABSENT or value is None:
        return "(none)"
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), ensure_ascii=False,
                                                            default=str)
    return text if len(text) <= SHORT else text[:SHORT - 1] + "…"
