"""A copy of rules/ an author can break, and edits to it that fail loudly when the text they change is gone."""

from __future__ import annotations

from pathlib import Path

from cds.knowledge import load_knowledge

RULES = Path(__file__).resolve().parents[2] / "rules"
_KNOWLEDGE = load_knowledge(RULES)
SERVICE_IDS = tuple(s.id for s in _KNOWLEDGE.service_file.services)
# The parameters' values, for what a test states before any fixture exists (parametrize); tests read the thresholds
# from here or from the `knowledge` fixture, never as numbers of their own, so that a tuned threshold moves them too.
VALUES = _KNOWLEDGE.values


def edit(path: Path, old: str, new: str, count: int = 1) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path.name}"
    path.write_text(text.replace(old, new, count))


def set_parameter(rules: Path, name: str, value: float) -> None:
    """Give a parameter of a rules copy another value, whatever it is now."""
    import re

    path = rules / "parameters.yaml"
    text, count = re.subn(rf"(\n  {name}:\n    value: )[^\n]+", rf"\g<1>{value}", path.read_text())
    assert count == 1, f"{name} not in {path}"
    path.write_text(text)
