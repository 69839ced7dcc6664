"""Findings -> CDS Hooks cards: the findings grouped one card each
(`card_groups`), and the cards assembled from the rule's templates, the data lines and the suggestions
(`build_cards`; `build_silent_cards` for rules in silent mode). Pure: no I/O, no clock."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import timedelta
from typing import Any, Literal, cast

from cds.cards.context import CardContext
from cds.cards.drafts.suggestions import SUGGESTIONS
from cds.cards.lines import data_lines, note_lines, red_flag_lines
from cds.cards.uuids import card_uuid
from cds.cards.words import clip, done_words, fill, reason_text
from cds.clinical.features import day_words
from cds.clinical.recommend import Recommendation, current_words
from cds.engine import Evaluation, Fired
from cds.hooks.models import Card, Coding, OverrideReasonCoding, Source


def _data(ctx: CardContext) -> str:
    """The data lines behind the cards, made at the first card that shows them."""
    if ctx.data is None:
        ctx.data = data_lines(ctx)
    return ctx.data


def card_groups(findings: Iterable[Fired]) -> list[list[Fired]]:
    """The findings of each card, in card order: one card per recommendation code (and per draft order)."""
    groups: dict[tuple[str, str | None], list[Fired]] = {}
    for finding in findings:
        groups.setdefault((finding.code, finding.subject if finding.kind == "order" else None), []).append(finding)
    return list(groups.values())


def build_cards(evaluation: Evaluation, ctx: CardContext) -> list[tuple[Card, Fired]]:
    """One card per recommendation: the dose card, then one per draft order, then the patterns; each with its first
    finding (its rule). The findings are grouped here, once: `ctx.groups` keeps each card's findings."""
    groups = card_groups(evaluation.findings)
    ctx.groups = {findings[0].rule_id + (findings[0].subject or ""): findings for findings in groups}
    return [(_card(findings, ctx), findings[0]) for findings in groups]


def build_silent_cards(evaluation: Evaluation, ctx: CardContext,
                       recommendation: Callable[[Fired], Recommendation | None]) -> list[tuple[Card, Fired]]:
    """The card each rule in silent mode would have shown (one per rule and draft order, so that each rule's firing
    is counted apart), with its first finding. `recommendation` gives a dose finding's dose. Its uuid is its own, so
    that it never takes the place of a live card's in the audit."""
    built: list[tuple[Card, Fired]] = []
    by_rule: dict[tuple[str, str | None], list[Fired]] = {}
    for finding in evaluation.silent:
        by_rule.setdefault((finding.rule_id, finding.subject), []).append(finding)
    for (rule_id, subject), findings in by_rule.items():
        first = findings[0]
        own = replace(ctx, recommendation=recommendation(first) if first.kind == "dose" else None,
                      groups={rule_id + (subject or ""): findings})
        built.append((_card(findings, own, card_uuid(ctx.hook_instance, "silent", rule_id, subject or "")), first))
    return built


def _values(findings: list[Fired], ctx: CardContext) -> dict[str, Any]:
    f = ctx.features
    compiled = ctx.knowledge.rule(findings[0].rule_id)
    values: dict[str, Any] = dict(ctx.numbers)
    rec = ctx.recommendation if ctx.recommendation and ctx.recommendation.code == findings[0].code else None
    values.update({
        "activity": ctx.knowledge.info.activity_words[f.measure],
        "current_dose": current_words(f),
        "dose": rec.words(f) if rec else current_words(f),
        "change": (rec.change if rec and rec.change else ""),
        "reason": reason_text(findings, ctx),
        "data": "\n".join([_data(ctx), *note_lines(ctx, findings[0].code)]).strip("\n"),
        "red_flags": red_flag_lines(findings, ctx),
        "review_date": day_words(f.now + timedelta(days=f.review_days(ctx.params))),
        "done": done_words(f),
    })
    values.update({name: by_hook.get(ctx.hook, "") for name, by_hook in compiled.words.items()})
    review = ctx.reviews.get(findings[0].subject or "")
    if review is not None:
        proposed = review.proposed
        values["order"] = "the draft order" + (f" ({proposed.words()})" if proposed else "")
        values["proposed"] = f"{proposed.words()}" if proposed else "an undosed order"
        target = review.target(compiled.rule.conclude.dose)
        values["dose"] = target.words() if target else "a paced dose"
        if review.tolerated_weekly and proposed:
            jump = proposed.weekly / review.tolerated_weekly - 1
            values["data"] = (f"- Proposed: {proposed.weekly} min/week; tolerated or planned: "
                              f"{review.tolerated_weekly:.0f} min/week ({jump:+.0%})"
                              + ("\n" + values["data"] if values["data"] else ""))
    return values


Indicator = Literal["info", "warning", "critical"]
SEVERITY: dict[Indicator, int] = {"info": 0, "warning": 1, "critical": 2}


def _indicator(findings: list[Fired], ctx: CardContext) -> Indicator:
    """The most severe indicator of the card's rules at this hook."""
    conclusions = [ctx.knowledge.rule(f.rule_id).rule.conclude for f in findings]
    hook = cast(Literal["patient-view", "order-select", "order-sign"], ctx.hook)
    return max((c.indicator_at.get(hook, c.indicator) for c in conclusions), key=SEVERITY.__getitem__)


def _card(findings: list[Fired], ctx: CardContext, card_id: str | None = None) -> Card:
    first = findings[0]
    rule = ctx.knowledge.rule(first.rule_id).rule
    values = _values(findings, ctx)
    info = ctx.knowledge.info
    rules_fired = [ctx.knowledge.rule(f.rule_id).rule for f in findings]
    evidence = "; ".join(dict.fromkeys(c for r in rules_fired for c in r.evidence.citations))
    rules = ", ".join(dict.fromkeys(f"`{f.rule_id}` v{f.rule_version}" for f in findings))
    footer = f"Evidence: {evidence}. Rule {rules}, {info.name} {ctx.knowledge.version}."
    body = fill(rule.conclude.detail, values)
    if "†" in body:
        footer += "\n† our threshold, not a guideline figure"
    detail = "\n\n".join(part for part in (body, footer) if part)
    suggestions = [s for spec in rule.conclude.suggest for s in SUGGESTIONS[spec.kind](ctx, first, spec)]
    return Card(
        uuid=card_id or card_uuid(ctx.hook_instance, first.code, first.subject or ""),
        summary=clip(fill(rule.conclude.summary, values)),
        detail=detail,
        indicator=_indicator(findings, ctx),
        source=Source(label=f"{info.name} {ctx.knowledge.version}",
                      url=f"{ctx.rules_url}#{first.rule_id}" if ctx.rules_url else None,
                      topic=Coding(system=info.code_system, code=first.code,
                                   display=first.code.replace("-", " ").capitalize())),
        suggestions=suggestions or None,
        selectionBehavior=rule.conclude.selection if suggestions else None,
        overrideReasons=[OverrideReasonCoding(system=info.override_reason_system, code=r.code, display=r.display)
                         for r in info.override_reasons],
    )
