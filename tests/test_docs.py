"""The documentation keeps step with rules/, and nothing in the repository points outside it."""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import yaml

from cds.engine import Knowledge
from cds.knowledge.checks import docs_coverage

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "rules"

# An upper-case document name such as README.md: it must be a file of the repository.
DOCUMENT = re.compile(r"\b[A-Z][A-Z_]+\.md\b")
TEXT_SUFFIXES = {".py", ".md", ".yaml", ".yml", ".toml", ".json", ".cfg", ".ini", ".txt", ".sh"}
TEXT_NAMES = {"Makefile", "run"}


def rule_files() -> list[tuple[Path, dict[str, Any]]]:
    """Every YAML file under rules/ that holds a top-level list of rules (flat files or one folder per rule)."""
    found = []
    for path in sorted(RULES.glob("**/*.yaml")):
        content = yaml.safe_load(path.read_text())
        if isinstance(content, dict) and isinstance(content.get("rules"), list):
            found.append((path, content))
    return found


def concluded_codes() -> set[str]:
    return {rule["conclude"]["code"] for _, content in rule_files() for rule in content["rules"]}


def parameter_names() -> set[str]:
    return set(yaml.safe_load((RULES / "parameters.yaml").read_text())["parameters"])


def backticked(text: str) -> set[str]:
    return set(re.findall(r"`([^`\n]+)`", text))


def repository_files() -> list[Path]:
    """Files git knows of (tracked, or new and not ignored); without git, every file outside hidden folders."""
    try:
        listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                                cwd=ROOT, capture_output=True, check=True, timeout=60).stdout
    except (OSError, subprocess.CalledProcessError):
        return [p for p in ROOT.rglob("*")
                if p.is_file() and not any(part.startswith(".") and part != ".ci"
                                           for part in p.relative_to(ROOT).parts)]
    return [ROOT / name for name in listed.decode().split("\0") if name]


def text_files() -> list[Path]:
    return [p for p in repository_files()
            if p.is_file() and (p.suffix in TEXT_SUFFIXES or p.name in TEXT_NAMES)]


def test_the_rules_are_found() -> None:
    """Guards the two tests below: a rules/ layout this file no longer reads must not pass them vacuously."""
    assert rule_files(), "no rule file with a top-level `rules` list under rules/"
    assert all("code" in rule["conclude"] for _, content in rule_files() for rule in content["rules"])
    assert parameter_names()


def test_every_parameter_and_recommendation_code_is_named_in_the_clinical_specification(
        knowledge: Knowledge) -> None:
    """The docs coverage check of `pacing-cds rules check` (tests/knowledge/test_checks.py shows it failing), on
    the rules as this file reads them too."""
    assert docs_coverage(knowledge, ROOT / "docs") == []
    assert {c.rule.conclude.code for c in knowledge.rules} == concluded_codes()
    assert set(knowledge.parameters) == parameter_names()


def test_the_architecture_document_names_the_modules_it_describes() -> None:
    """A module renamed or removed in cds/ must be renamed in docs/architecture.md too."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    named = {name for name in backticked(text) if re.fullmatch(r"cds/[\w/]+\.py", name)}
    assert named, "docs/architecture.md names no module"
    assert sorted(name for name in named if not (ROOT / name).is_file()) == []


def outside_pattern(parent: Path, root_name: str) -> re.Pattern[str]:
    """References to what lies beside a checkout, never in it: the parent folder's absolute path, and any folder
    beside the checkout reached with a parent-relative path or named as a path component. Computed from where the
    checkout is, so that no such path is written in the repository."""
    siblings = sorted(p.name for p in parent.iterdir() if p.is_dir() and p.name != root_name and
                      not p.name.startswith("."))
    names = "|".join(re.escape(name) for name in siblings) or r"(?!)"
    # A checkout made in a shared folder (the system's temporary folder, the root, a home) has that folder as its
    # parent: a path into it (/tmp/pacing-export in a walk-through) is no reference to what lies beside the checkout.
    # Nor is a folder that happens to lie beside it there a sibling of the project: only a parent-relative path to
    # it still reaches outside.
    shared = {Path(tempfile.gettempdir()).resolve(), Path("/"), Path.home().resolve()}
    if parent.resolve() in shared:
        return re.compile(rf"{re.escape(os.pardir)}/(?:{names})\b")
    return re.compile(rf"{re.escape(str(parent))}/|{re.escape(os.pardir)}/(?:{names})\b|[/ ]\"(?:{names})\"")


def outside_references(text: str, pattern: re.Pattern[str], documents: set[str]) -> bool:
    return bool(pattern.search(text)) or any(name not in documents for name in DOCUMENT.findall(text))


def test_the_scan_tells_outside_references_from_the_project_s_own_words(tmp_path: Path) -> None:
    """Guards the test below: it must catch each kind of outside reference and nothing else."""
    (tmp_path / "checkout").mkdir()
    (tmp_path / "notes").mkdir()
    pattern = outside_pattern(tmp_path, "checkout")
    documents = {"README.md"}
    outside = [f"{os.pardir}/notes/plan", f"see {tmp_path}/checkout", "PLAN" + ".md section 3",
               'parents[2] / "notes" / "x"']
    inside = ["docs/clinical.md", "README.md", "a shared replay cache", "notes of the card", "rules/parameters.yaml",
              f"{os.pardir}/x"]
    assert [text for text in outside if not outside_references(text, pattern, documents)] == []
    assert [text for text in inside if outside_references(text, pattern, documents)] == []


def test_no_file_refers_to_a_path_outside_the_repository() -> None:
    pattern = outside_pattern(ROOT.parent, ROOT.name)
    files = text_files()
    documents = {p.name for p in files if p.suffix == ".md"}
    found = []
    for path in files:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError:
            continue
        found += [f"{path.relative_to(ROOT)}:{number}: {line.strip()[:100]}"
                  for number, line in enumerate(lines, 1) if outside_references(line, pattern, documents)]
    assert found == [], "references to paths outside the repository:\n" + "\n".join(found)


def test_beside_a_checkout_in_a_shared_folder_only_parent_relative_paths_reach_outside() -> None:
    """A clone under the temporary folder sits beside whatever else is there: a word that names one of those
    folders is the project's own word; a ../ path to one is still an outside reference."""
    beside = Path(tempfile.mkdtemp(prefix="pacing-beside-"))
    try:
        pattern = outside_pattern(beside.parent, "checkout")
        assert outside_references(f"{os.pardir}/{beside.name}/plan", pattern, set())
        assert not outside_references(f'(tmp_path / "{beside.name}").mkdir()', pattern, set())
    finally:
        beside.rmdir()
