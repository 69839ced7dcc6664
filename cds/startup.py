"""What every command checks before it runs: the rules folder loads whole (rules, parameters, scenarios, the patient
plan's text), and the settings that name parts of it (PACING_CDS_SILENT) name parts it has. Each problem is printed,
escaped, on standard error; the command then stops."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cds.logs import escape_controls
from cds.settings import Settings

if TYPE_CHECKING:
    from cds.engine import Knowledge


def unknown_silent(settings: Settings, knowledge: Knowledge) -> str | None:
    """Why PACING_CDS_SILENT cannot be used with these rules (it names a service they do not define), or None."""
    unknown = [s for s in settings.silent if s not in knowledge.services]
    if not unknown:
        return None
    return (f"PACING_CDS_SILENT names no service of the rules: {', '.join(unknown)} (known: "
            f"{', '.join(sorted(knowledge.services))})")


def checked_rules(folder: Path, label: str, out: Any = sys.stderr) -> Knowledge | None:
    """The rules of `folder` with the patient texts they need; None after printing every problem under `label`."""
    from cds.engine import RuleError, load_knowledge

    try:
        return load_knowledge(folder)
    except RuleError as exc:
        print_problems(label, exc.problems, out)
    return None


def check_rules(settings: Settings, out: Any = sys.stderr) -> Knowledge | None:
    """The rules a command runs with (PACING_CDS_RULES_DIR), checked with the settings; None after printing every
    problem."""
    knowledge = checked_rules(settings.rules_path, str(settings.rules_path), out)
    if knowledge is None:
        return None
    unknown = unknown_silent(settings, knowledge)
    if unknown:
        print_problems(str(settings.rules_path), [unknown], out)
        return None
    return knowledge


def print_problems(label: str, problems: list[str], out: Any = sys.stderr) -> None:
    print(escape_controls(f"pacing-cds: {len(problems)} problem(s) in {label}:"), file=out)
    for problem in problems:
        print(escape_controls(f"  {problem}"), file=out)
