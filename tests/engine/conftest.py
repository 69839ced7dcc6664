"""Fixtures for the engine tests: the project's knowledge, and a copy of rules/ an author can break."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cds.services import by_id

RULES = Path(__file__).resolve().parents[2] / "rules"
SERVICE_IDS = tuple(by_id())


@pytest.fixture
def rules_copy(tmp_path: Path) -> Path:
    target = tmp_path / "rules"
    shutil.copytree(RULES, target)
    return target


def edit(path: Path, old: str, new: str, count: int = 1) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path.name}"
    path.write_text(text.replace(old, new, count))
