"""The end-to-end examples of fhir_examples/<name>/, beside rules/ in a checkout of the project.

An example is a complete CDS Hooks call (request.json), its intent written by hand (expected.json: service, `now`,
the card codes in order, the dose, words the cards say), and the answer and `pacing-cds evaluate` output recorded
after review (response.json, evaluate.txt). The rules own the examples: a rule names in its `examples:` the ones
that are there to show its card. An installed package has rules and no examples, and then nothing here is checked.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pydantic import ValidationError

from cds.knowledge.conditions import Problems
from cds.knowledge.schema import ExpectedAnswer, Rule


class OwningRule(Protocol):
    """What the examples' checks read of a compiled rule (cds/knowledge/loader.py's CompiledRule)."""

    @property
    def rule(self) -> Rule: ...

    @property
    def file(self) -> str: ...

    @property
    def services(self) -> tuple[str, ...]: ...

EXAMPLES_DIR = "fhir_examples"  # beside the rules folder, in a checkout of the repository
REQUEST_FILE = "request.json"
EXPECTED_FILE = "expected.json"
RESPONSE_FILE = "response.json"
EVALUATE_FILE = "evaluate.txt"
VERSION_MARK = "<rule set version>"  # stands for the rule set version in the recorded answers


def examples_folder(rules_dir: Path) -> Path | None:
    """The examples folder beside `rules_dir`, or None when there is none (an installed package)."""
    folder = rules_dir.parent / EXAMPLES_DIR
    return folder if folder.is_dir() else None


def missing_examples(rules_dir: Path) -> str:
    """What a command says when the rules have no examples folder beside them."""
    return f"no {EXAMPLES_DIR} folder beside {rules_dir} (an installed package has none)"


def example_dirs(examples_dir: Path) -> list[Path]:
    """Every end-to-end example of fhir_examples/ (a folder with request.json), by name."""
    return sorted((p.parent for p in examples_dir.glob(f"*/{REQUEST_FILE}")), key=lambda p: p.name)


@dataclass(frozen=True)
class Example:
    """One example folder, and the ids of the rules that own it (name it in their `examples:`)."""

    folder: Path
    owners: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def request(self) -> dict[str, Any]:
        return json.loads((self.folder / REQUEST_FILE).read_text(encoding="utf-8"))

    @property
    def expected(self) -> dict[str, Any]:
        """expected.json as written."""
        return json.loads((self.folder / EXPECTED_FILE).read_text(encoding="utf-8"))

    @property
    def intent(self) -> ExpectedAnswer:
        """expected.json, validated."""
        return ExpectedAnswer.model_validate_json((self.folder / EXPECTED_FILE).read_bytes())

    def response(self, version: str) -> dict[str, Any]:
        """The answer recorded after review, with the rule set version put back."""
        return json.loads((self.folder / RESPONSE_FILE).read_text(encoding="utf-8").replace(VERSION_MARK, version))

    def evaluate_text(self, version: str) -> str:
        """What `pacing-cds evaluate` printed for it when the answer was recorded."""
        return (self.folder / EVALUATE_FILE).read_text(encoding="utf-8").replace(VERSION_MARK, version)


def owners_of(rules: Iterable[OwningRule]) -> dict[str, tuple[str, ...]]:
    """Example name -> the ids of the rules that name it, in the order of the rules."""
    owners: dict[str, list[str]] = {}
    for compiled in rules:
        for name in compiled.rule.examples:
            owners.setdefault(name, []).append(compiled.rule.id)
    return {name: tuple(ids) for name, ids in owners.items()}


def read_examples(examples_dir: Path, owners: Mapping[str, Sequence[str]]) -> list[Example]:
    """Every example of `examples_dir`, by name, each with its owners."""
    return [Example(folder, tuple(owners.get(folder.name, ()))) for folder in example_dirs(examples_dir)]


def check_examples(rules: Sequence[OwningRule], examples_dir: Path, problems: Problems) -> None:
    """Each example a rule names is a folder of `examples_dir` whose expected.json is valid and asks a service of
    that rule; every example there is owned by at least one rule, and expects only recommendation codes."""
    found = {folder.name: folder for folder in example_dirs(examples_dir)}
    owners = owners_of(rules)
    codes = {c.rule.conclude.code for c in rules}
    services = {service for c in rules for service in c.services}
    intents: dict[str, ExpectedAnswer] = {}
    for name, folder in found.items():
        if name not in owners:
            problems.add(f"{EXAMPLES_DIR}/{name}", "no rule owns this example: name it in the examples: of the rule "
                                                   "whose card it shows (rules/<code>/rule.yaml)")
        where = f"{EXAMPLES_DIR}/{name}/{EXPECTED_FILE}"
        try:
            intent = ExpectedAnswer.model_validate_json((folder / EXPECTED_FILE).read_bytes())
        except OSError as exc:
            problems.add(where, f"cannot be read ({exc.strerror})")
            continue
        except ValidationError as exc:
            for err in exc.errors(include_url=False, include_input=False):
                loc = ".".join(str(p) for p in err["loc"])
                problems.add(f"{where} {loc}".strip(), str(err["msg"]).removeprefix("Value error, "))
            continue
        intents[name] = intent
        if intent.service not in services:
            problems.add(where, f"service {intent.service!r} is not one of {sorted(services)}")
        for code in intent.codes:
            if code not in codes:
                problems.add(f"{where} codes", f"{code!r} is not a recommendation code (no rule concludes it)")
    for compiled in rules:
        where = f"{compiled.file} rule {compiled.rule.id}"
        for name in compiled.rule.examples:
            if name not in found:
                problems.add(where, f"examples: {name!r} is not an example ({EXAMPLES_DIR}/{name}/{REQUEST_FILE} "
                                    "does not exist)")
            elif name in intents and intents[name].service not in compiled.services:
                problems.add(where, f"examples: {name!r} asks the service {intents[name].service!r}, which does not "
                                    f"use this rule (its services: {', '.join(compiled.services)})")
