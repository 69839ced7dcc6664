"""Write the recorded `pacing-cds evaluate` output of the progress-walking example into the README's terminal
block, with the current rule set version (after `scripts/generate_examples.py --answers`), and the table of the
examples from their expected.json files and the rules that own them (never written by hand, so never stale).

    .venv/bin/python scripts/update_readme.py   # or `make record`: the examples' answers first, then this
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMAND = "$ .venv/bin/pacing-cds evaluate fhir_examples/progress-walking/request.json " \
          "--now 2026-11-20T09:00:00Z\n"


TABLE_HEAD = "| Example | Owned by | Service | Recommendations | Dose | What it shows |\n|---|---|---|---|---|---|\n"
TABLE_START = "| Example |"  # the first line of the table, whatever its columns were


def examples_table() -> str:
    """One row per example, by name: the rules that own it (name it in their examples:), then its expected.json."""
    sys.path.insert(0, str(ROOT))
    from tests.support.examples import EXAMPLES

    rows = []
    for e in EXAMPLES:
        intent = e.intent
        rows.append(f"| `{e.name}` | {', '.join(f'`{rule}`' for rule in e.owners)} | {intent.service} | "
                    f"{', '.join(intent.codes) or '(no card)'} | {intent.dose or ''} | {intent.shows} |")
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
    start = text.index("\n" + TABLE_START) + 1
    head, rest = text[:start], text[start:]
    rest = rest[rest.index("\n\n"):]  # the old table, up to the blank line after it
    readme.write_text(head + examples_table() + rest.removeprefix("\n"))
    print(f"README: evaluate output of progress-walking at rule set {version}")


if __name__ == "__main__":
    main()
