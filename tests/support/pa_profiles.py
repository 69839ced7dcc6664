"""Checks a FHIR resource against the facts of tests/data/pa_ig_profiles.yaml (what the Physical Activity IG
profiles require): required and prohibited elements, fixed values, required codes, reference types, the category
slice and the invariants, each in the small checkable form the facts file gives."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml

FACTS = Path(__file__).resolve().parents[1] / "data" / "pa_ig_profiles.yaml"


@cache
def profile_facts() -> dict[str, Any]:
    """The facts file, read once."""
    return yaml.safe_load(FACTS.read_text())


def profiles() -> dict[str, dict[str, Any]]:
    """The profiles, by canonical url."""
    return {facts["url"]: facts for facts in profile_facts()["profiles"].values()}


def _step(node: Any, name: str) -> list[Any]:
    """The values of one element of a node; `name[x]` is a choice (author[x]: authorReference, authorString)."""
    if not isinstance(node, dict):
        return []
    if name.endswith("[x]"):
        stem = name[:-3]
        found = [v for k, v in node.items() if k.startswith(stem) and k[len(stem):len(stem) + 1].isupper()]
    else:
        found = [node[name]] if name in node else []
    values: list[Any] = []
    for value in found:
        values += value if isinstance(value, list) else [value]
    return [v for v in values if v not in (None, "", [], {})]


def values(node: Any, path: str) -> list[Any]:
    """Every value at a dotted path ("." is the node itself), lists flattened on the way (as FHIRPath does)."""
    if path == ".":
        return [node]
    nodes = [node]
    for name in path.split("."):
        nodes = [value for n in nodes for value in _step(n, name)]
    return nodes


def _reference_type(reference: str) -> str:
    """The resource type of a relative or absolute literal reference."""
    parts = reference.split("/_history/")[0].rstrip("/").split("/")
    return parts[-2] if len(parts) >= 2 else ""


def _invariant_holds(node: Any, invariant: dict[str, Any]) -> bool:
    if "any_of" in invariant:
        return any(values(node, path) for path in invariant["any_of"])
    if "when_present" in invariant and not values(node, invariant["when_present"]):
        return True
    if "when_absent" in invariant and values(node, invariant["when_absent"]):
        return True
    return all(values(node, path) for path in invariant["requires"])


def _category_problems(resource: dict[str, Any], pattern: dict[str, str]) -> list[str]:
    matching = [c for c in values(resource, "category")
                if any(coding.get("system") == pattern["system"] and coding.get("code") == pattern["code"]
                       for coding in values(c, "coding"))]
    if len(matching) != 1:
        return [f"category[PA] ({pattern['system']}#{pattern['code']}) occurs {len(matching)} times, not once"]
    return []


def _element_problems(resource: dict[str, Any], facts: dict[str, Any]) -> list[str]:
    problems = []
    for context, paths in facts.get("required", {}).items():
        for node in values(resource, context):
            problems += [f"{context}: {path} is required (min 1)" for path in paths if not values(node, path)]
    for context, paths in facts.get("prohibited", {}).items():
        for node in values(resource, context):
            problems += [f"{context}: {path} is not allowed (max 0)" for path in paths if values(node, path)]
    for path, fixed in facts.get("fixed", {}).items():
        problems += [f"{path} is {value!r}, fixed to {fixed!r}" for value in values(resource, path) if value != fixed]
    for path, allowed in facts.get("codes", {}).items():
        problems += [f"{path} {value!r} is not one of {allowed}" for value in values(resource, path)
                     if value not in allowed]
    for path, types in facts.get("reference_types", {}).items():
        problems += [f"{path} {reference!r} is not a reference to {' or '.join(types)}"
                     for reference in values(resource, f"{path}.reference") if _reference_type(reference) not in types]
    return problems


def problems(resource: dict[str, Any], facts: dict[str, Any]) -> list[str]:
    """What in the resource breaks the profile's facts; empty when it conforms."""
    found = []
    if resource.get("resourceType") != facts["resource"]:
        found.append(f"resourceType {resource.get('resourceType')!r} is not {facts['resource']}")
    if facts["url"] not in values(resource, "meta.profile"):
        found.append(f"meta.profile does not claim {facts['url']}")
    found += _category_problems(resource, facts["category"])
    found += _element_problems(resource, facts)
    for invariant in facts.get("invariants", []):
        found += [f"{invariant['key']} ({invariant['context']}): {invariant['human']}"
                  for node in values(resource, invariant["context"]) if not _invariant_holds(node, invariant)]
    return found
