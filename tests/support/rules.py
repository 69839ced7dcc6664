"""A copy of rules/ an author can break, and edits to it that fail loudly when the text they change is gone."""

from __future__ import annotations

from pathlib import Path

from cds.knowledge import load_knowledge

RULES = Path(__file__).resolve().parents[2] / "rules"
SERVICE_IDS = tuple(s.id for s in load_knowledge(RULES).service_file.services)


def edit(path: Path, old: str, new: str, count: int = 1) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path.name}"
    path.write_text(text.replace(old, new, count))
