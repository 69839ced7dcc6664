"""cds/clinical, cds/cards and the chart series promise purity: no Flask, no HTTP client, no database, no clock."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CDS = Path(__file__).resolve().parents[2] / "cds"
PURE = sorted((CDS / "clinical").glob("*.py")) + sorted((CDS / "cards").rglob("*.py")) + [
    CDS / "charts" / "series.py", CDS / "charts" / "weeks.py"]
FORBIDDEN = {"flask", "werkzeug", "httpx", "requests", "urllib", "socket", "sqlalchemy", "gunicorn", "cds.api",
             "cds.store", "cds.fhir.client", "cds.fhir.resolver", "subprocess", "os", "time"}


@pytest.mark.parametrize("path", PURE, ids=lambda p: str(p.relative_to(CDS)))
def test_pure_modules_import_nothing_that_does_io(path: Path) -> None:
    tree = ast.parse(path.read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
    bad = {name for name in imported if any(name == f or name.startswith(f + ".") for f in FORBIDDEN)}
    assert not bad, f"{path.name} imports {sorted(bad)}"
    if path.parent.name == "clinical":
        allowed = {name for name in imported if name.startswith("cds.clinical") or "." not in name or
                   name.split(".")[0] in {"collections", "datetime", "dataclasses", "typing", "statistics", "math"}}
        assert imported == allowed, f"{path.name} may import only the standard library and cds.clinical"


@pytest.mark.parametrize("path", PURE, ids=lambda p: str(p.relative_to(CDS)))
def test_pure_modules_never_read_the_clock(path: Path) -> None:
    text = path.read_text()
    for call in ("datetime.now(", "datetime.utcnow(", "date.today(", "time.time("):
        assert call not in text, f"{path.name} reads the clock"
