"""The data lines behind a card: the plan against what was done this week, pain, load, staleness and what could not
be read (`data_lines`, the same for every card of a call), the notes of the patient's conditions (`note_lines`) and
one line per fact a rule matched (`finding_lines`, `red_flag_lines`). Pure: no I/O, no clock."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cds.cards.words import days_ago, plural, render, since, week_words
from cds.engine import Fired

if TYPE_CHECKING:
    from cds.cards.context import CardContext


def _plan_words(ctx: CardContext) -> str:
    """Where the plan comes from, in words: never a FHIR id."""
    f, record = ctx.features, ctx.record
    current = record.current_order
    if f.measure == "minutes" and current is not None and (f.plan_source == current.reference or f.dose_unread):
        what = "the care plan" if current.reference.startswith("CarePlan/") else "the current order"
        return f"{what}{since(current.start)}"
    if f.measure == "steps" and record.step_goal is not None and f.plan_source == record.step_goal.reference:
        return f"the step goal{since(record.step_goal.start)}"
    return f.plan_source or "no plan"


def _activity_line(ctx: CardContext) -> str | None:
    f = ctx.features
    week = week_words(f.now.date())
    if f.measure == "minutes":
        current = ctx.record.current_order
        if f.dose_unread and current is not None:
            plan = f"Plan: {_plan_words(ctx)} has no dose that can be read"
        elif f.has_prescription and f.plan:
            plan = f"Plan {f.plan.words()} ({f.plan.weekly} min; {_plan_words(ctx)})"
        else:
            plan = "No plan"
        if f.weekly_minutes is None and not f.untimed_last7:
            return f"- {plan}; nothing recorded {week}" if f.has_prescription else None
        if f.untimed_last7:
            done = f"{plural(f.sessions_last7, 'session')}, {f.untimed_last7} without a duration (counted by sessions)"
        elif ctx.record.sessions:
            done = f"{f.weekly_minutes:.0f} min in {plural(f.sessions_last7, 'session')}"
        else:
            done = f"{f.weekly_minutes:.0f} min/week (Exercise Vital Sign)"
        share = f" ({f.adherence:.0%})" if f.adherence is not None and f.has_prescription else ""
        return f"- {plan}; done {week}: {done}{share}"
    if f.dose_unread and ctx.record.step_goal is not None:
        plan = f"Plan: the step goal{since(ctx.record.step_goal.start)} names no number of steps that can be read"
    else:
        plan = f"Quota {round(f.quota):,} steps/day ({_plan_words(ctx)})" if f.has_prescription and f.quota \
            else "No plan"
    if f.mean_daily_steps is None:
        return f"- {plan}; no steps recorded {week}" if f.has_prescription else None
    share = f" ({f.adherence:.0%})" if f.adherence is not None and f.has_prescription else ""
    return f"- {plan}; {week}: {f.mean_daily_steps:,.0f} steps/day over {plural(f.step_days_last7, 'day')}{share}"


def _pain_line(ctx: CardContext) -> str:
    f = ctx.features
    if f.pain_now is not None and f.pain_baseline is not None:
        now, before = f.pain_readings
        line = (f"- Pain ({f.pain_scale}) {f.pain_now:.1f} this week against {f.pain_baseline:.1f} before "
                f"({now} and {plural(before, 'score')})")
    elif f.days_since_pain is None:
        line = "- Pain: no scores recorded"
    else:
        line = f"- Pain: too few scores to compare (last {days_ago(f.days_since_pain)})"
    if f.flare:
        line += "; flare now"
    if f.flare_weeks:
        line += f"; {plural(f.flare_weeks, 'flare week')} of the last 4"
    if f.peg_unconfirmed:
        line += "; one PEG rise, unconfirmed"
    return line


def data_lines(ctx: CardContext) -> str:
    """The numbers behind the cards, with dates, in a few short lines (the same for every card of the call)."""
    f, params = ctx.features, ctx.params
    lines = [line for line in (_activity_line(ctx), _pain_line(ctx)) if line]
    if f.acwr is not None and f.acwr > params["acwr_progression_cap"]:
        lines.append(f"- Last 7 days against the 28-day level: {f.acwr:.2f}†")
    if f.inactive_reason:
        lines.append(f"- Inactive: {f.inactive_reason}")
    stale = params["recent_days"]
    if f.days_since_activity is not None and (f.days_since_activity >= stale or (f.days_since_pain or 0) >= stale):
        pain = "never" if f.days_since_pain is None else days_ago(f.days_since_pain)
        lines.append(f"- Last activity {days_ago(f.days_since_activity)}; last pain score {pain}")
    info = ctx.knowledge.info
    if f.age_assumed:
        lines.append(f"- {info.data_lines['age_not_recorded']}")
    if ctx.patient_language.wanted_name is not None:
        lines.append("- " + info.data_lines["language_not_available"].format(
            language=ctx.patient_language.wanted_name))
    elif ctx.record.language_text is not None:
        lines.append("- " + info.data_lines["language_text_only"].format(text=ctx.record.language_text))
    if f.unread_needed:  # only what the dose could rest on: data the recommendation does not need is not named
        what = ", ".join(info.unread_words.get(t, t) for t in f.unread_needed)  # type: ignore[call-overload]
        lines.append("- " + info.data_lines["could_not_be_read"].format(what=what))
    if f.set_aside:
        reasons = ctx.record.readings_set_aside()
        why = reasons[0][0] if len(reasons) == 1 else ", ".join(f"{count} {reason}" for reason, count in reasons)
        lines.append(f"- Set aside: {plural(f.set_aside, 'reading')} ({why})")
    return "\n".join(lines)


def note_lines(ctx: CardContext, code: str) -> list[str]:
    """The notes of the value sets the patient's conditions fall in (conditions that are no red flag alone), as the
    card of recommendation `code` shows them: a value set may leave its note out of some cards."""
    notes = []
    for fact in ctx.facts:
        value_set = ctx.knowledge.value_sets.get(str(fact.get("value_set")))
        if value_set is None or value_set.note is None or code in value_set.note_not_with:
            continue
        if fact.get("clinical") == "history":  # over: its note only where the value set keeps it for the past
            if value_set.note_history:
                notes.append(f"- {value_set.note}")
            continue
        after = ctx.params.get(value_set.note_after) if value_set.note_after else None
        if after is None or fact.get("days_since_recorded", 0) > after:
            notes.append(f"- {value_set.note}")
    return list(dict.fromkeys(notes))


def finding_lines(findings: list[Fired], ctx: CardContext) -> list[str]:
    """One line per fact a rule matched, from the rule's `finding` template (a red flag, a precaution)."""
    lines = []
    value_sets = ctx.knowledge.value_sets
    for finding in findings:
        templates = ctx.knowledge.rule(finding.rule_id).rule.conclude.findings
        for fact in finding.facts.values():
            values: dict[str, Any] = {**ctx.params, **fact}
            if fact.get("value_set") in value_sets:
                values["red_flag_label"] = value_sets[fact["value_set"]].name
            if fact.get("t") == "condition" and "days_since_recorded" not in fact:
                values["undated"] = ""
            lines += [line for line in (render(t, values) for t in templates) if line]
    return list(dict.fromkeys(lines))


def red_flag_lines(findings: list[Fired], ctx: CardContext) -> str:
    return "\n".join(finding_lines(findings, ctx))
