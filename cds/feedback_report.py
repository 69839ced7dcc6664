"""`pacing-cds feedback report` as plain tables: each card counted once, by its latest outcome, then the override
reasons of those outcomes named in the rule set's own code system."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from cds.knowledge.schema import RuleSetInfo
from cds.logs import escape_controls
from cds.store.database import FeedbackReport

NOT_ISSUED = "(card not issued here)"
UNKNOWN_REASON = "(unknown reason)"
NO_REASON = "(no reason given)"


def reason_names(info: RuleSetInfo, system: str | None, code: str | None) -> tuple[str, str]:
    """(code, display) of an override reason: the display ruleset.yaml gives the code, else marked unknown."""
    if code is None:
        return "-", NO_REASON
    # Codes and systems are client text: escape control characters so that none reaches the terminal.
    shown = escape_controls(code)
    if system != info.override_reason_system:
        return shown, f"{UNKNOWN_REASON} system {escape_controls(system or '-')}"
    display = next((r.display for r in info.override_reasons if r.code == code), None)
    return shown, display or UNKNOWN_REASON


def render(report: FeedbackReport, info: RuleSetInfo, out: Any) -> None:
    """The card table per service and topic, its total, then the override reasons of the latest outcomes."""
    cards: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: {"accepted": 0, "overridden": 0})
    reasons: dict[tuple[str, str, str, str], int] = defaultdict(int)
    for group in report.groups:
        key = (escape_controls(group.service), escape_controls(group.topic) if group.topic else NOT_ISSUED)
        cards[key][group.outcome] = cards[key].get(group.outcome, 0) + group.cards
        if group.outcome == "overridden":
            reasons[(*key, *reason_names(info, group.reason_system, group.reason_code))] += group.cards
    total = {"accepted": 0, "overridden": 0}
    rows: list[list[Any]] = []
    for (service, topic), counts in sorted(cards.items(), key=_order):
        rows.append([service, topic, sum(counts.values()), counts["accepted"], counts["overridden"]])
        for outcome in total:
            total[outcome] += counts[outcome]
    rows.append(["total", "", sum(row[2] for row in rows), total["accepted"], total["overridden"]])
    print(f"events received: {report.events} ({rows[-1][2]} cards)\n", file=out)
    print_table(["service", "topic", "cards", "accepted", "overridden"], rows, out)
    if reasons:
        print("\nOverride reasons (the latest outcome of each card)", file=out)
        print_table(["service", "topic", "code", "reason", "cards"],
               [[*key, n] for key, n in sorted(reasons.items(), key=_order)], out)


def _order(item: tuple[tuple[str, ...], Any]) -> tuple[Any, ...]:
    """By service, then topic, cards not issued here last in their service."""
    service, topic, *rest = item[0]
    return service, topic == NOT_ISSUED, topic, *rest


def print_table(header: Sequence[str], rows: Sequence[Sequence[Any]], out: Any) -> None:
    """Columns two spaces apart: text left-aligned, numbers right-aligned."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    numeric = [all(isinstance(row[i], int) for row in rows) for i in range(len(header))]
    for row in [header, *rows]:
        cells = [f"{cell!s:>{w}}" if right else f"{cell!s:<{w}}" for cell, w, right in zip(row, widths, numeric,
                                                                                          strict=True)]
        print("  ".join(cells).rstrip(), file=out)
