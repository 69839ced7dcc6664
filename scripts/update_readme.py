"""Write the recorded `pacing-cds evaluate` output of the progress-walking example into the README's terminal
block, with the current rule set version (after `scripts/generate_examples.py --answers`), and the table of the
examples from their expected.json files (never written by hand, so never stale).

    .venv/bin/python scripts/update_readme.py   # or `make record`: the examples' answers first, then this
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMAND = "$ .venv/bin/pacing-cds evaluate fhir_examples/progress-walking/request.json " \
          "--now 2026-11-20T09:00:00Z\n"


TABLE_HEAD = "| Example | Service | Recommendations | Dose | What it shows |\n|---|---|---|---|---|\n"


def examples_table() -> str:
    """One row per example of rules/, from its expected.json, by name."""
    sys.path.insert(0, str(ROOT))
    from tests.support.examples import EXAMPLES

    rows = [f"| `{e.name}` | {e.expected['service']} | {', '.join(e.expected['codes']) or '(no card)'} | "
            f"{e.expected['dose'] or ''} | {e.expected['shows']} |" for e in EXAMPLES]
    return TABLE_HEAD + "\n".join(rows) + "\n"


def main() -> None:
    sys.path.insert(0, str(ROOT))
    from cds.knowledge import load_knowledge
    from tests.support.examples import BY_NAME

    readme = ROOT / "README.md"
    text = readme.read_text()
    before, rest = text.split(COMMAND, 1)
    after = rest.split("\n```", 1)[1]
    version = load_knowledge(ROOT / "rules").version
    shown = BY_NAME["progress-walking"].evaluate_text(version).rstrip()
    text = before + COMMAND + shown + "\n```" + after
    head, rest = text.split(TABLE_HEAD, 1)
    rest = rest[rest.index("\n\n"):]  # the old rows, up to the blank line after the table
    readme.write_text(head + examples_table() + rest.removeprefix("\n"))
    print(f"README: evaluate output of progress-walking at rule set {version}")


if __name__ == "__main__":
    main()
