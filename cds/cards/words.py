"""The words of a card: the rule's templates filled in (`fill`, `render`), parameters as card text writes them
(`Number`), a summary clipped under 140 characters, and the small phrases the data lines and the reason are made
of (days ago, plurals, the week, what was done). Pure: no I/O, no clock."""

from __future__ import annotations

import string
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from cds.clinical.features import MONTHS, Features, day_words
from cds.engine import Fired
from cds.knowledge.conditions import matches
from cds.knowledge.schema import template_texts

if TYPE_CHECKING:
    from cds.cards.context import CardContext


@lru_cache(maxsize=4096)
def _names(template: str) -> frozenset[str]:
    """The names a template fills in, parsed once per template (the templates are the rule set's)."""
    return frozenset(name for _, name, _, _ in string.Formatter().parse(template) if name)


def fill(template: str, values: Mapping[str, Any]) -> str:
    """A card template filled in: blocks apart by a blank line; a paragraph's wrapped lines joined into one, list
    lines ("- ...") kept one per line; empty blocks left out."""
    text = template.format(**{name: values.get(name, "") for name in _names(template)})
    blocks = []
    for block in text.strip().split("\n\n"):
        lines: list[str] = []
        for line in (raw.strip() for raw in block.splitlines()):
            if not line:
                continue
            if lines and not line.startswith("- ") and not lines[-1].startswith("- "):
                lines[-1] += " " + line
            else:
                lines.append(line)
        if lines:
            blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def render(template: str | list[str] | None, values: Mapping[str, Any]) -> str:
    """A template, or its segments: a segment naming a value that is absent is left out."""
    return "".join(segment.format(**{n: values[n] for n in names})
                   for segment in template_texts(template)
                   for names in (_names(segment),) if all(n in values for n in names))


def clip(summary: str) -> str:
    return summary if len(summary) < 140 else summary[:136].rstrip() + "..."


def done_words(f: Features) -> str:
    """What was done in the last 7 days: minutes a week, or mean steps a day."""
    if f.weekly_minutes is not None and (f.measure == "minutes" or f.mean_daily_steps is None):
        return f"{f.weekly_minutes:.0f} min/week"
    return f"{f.mean_daily_steps:,.0f} steps/day" if f.mean_daily_steps is not None else "the current activity"


def days_ago(days: int) -> str:
    return "today" if days == 0 else "yesterday" if days == 1 else f"{days} days ago"


def plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def week_words(today: date) -> str:
    first = today - timedelta(days=6)
    return (f"{first.day}-{today.day} {MONTHS[today.month - 1]}" if first.month == today.month
            else f"{day_words(first)} - {day_words(today)}")


def since(start: datetime | None) -> str:
    return f" since {day_words(start)}" if start is not None else ""


def reason_text(findings: list[Fired], ctx: CardContext) -> str:
    """The rule's reasons whose test the matched facts pass, joined; else its `no_reason`."""
    texts = []
    for finding in findings:
        compiled = ctx.knowledge.rule(finding.rule_id)
        fact = {k: v for matched in finding.facts.values() for k, v in matched.items()}
        values = {**ctx.numbers, **fact}
        texts += [text.format(**values) for when, text in compiled.reasons if matches(when, fact)]
    if texts:
        return " and ".join(dict.fromkeys(texts))
    return ctx.knowledge.rule(findings[0].rule_id).rule.conclude.no_reason or ""
