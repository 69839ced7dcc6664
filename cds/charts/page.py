"""The chart page and the plan page as HTML: Jinja templates (autoescaped) around the SVG and the plan text."""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from cds.charts.model import Dose, Series
from cds.charts.plan import plan_sentences
from cds.charts.weeks import Week, weeks
from cds.knowledge.patient_text import PatientTexts


@lru_cache(maxsize=1)
def _templates() -> Environment:
    return Environment(loader=PackageLoader("cds.charts", "templates"), autoescape=select_autoescape(["html"]),
                       trim_blocks=True, lstrip_blocks=True)


def dose_words(series: Series, dose: Dose | None) -> str | None:
    """A dose as the card words it: "22 min x 3/week" or "6,600 steps/day"."""
    if dose is None:
        return None
    if series.measure == "steps" and dose.quota is not None:
        return f"{round(dose.quota):,} steps/day"
    if dose.minutes is not None and dose.per_week is not None:
        return f"{dose.minutes} min x {dose.per_week}/week"
    return None


def headline(series: Series) -> str:
    """The card's recommendation in one sentence, with the plan in force (or that there is none) and the dose
    proposed."""
    name = series.code.replace("-", " ").capitalize()
    current, proposed = dose_words(series, series.plan), dose_words(series, series.proposed)
    if proposed and current and proposed != current:
        return f"{name}: from {current} to {proposed} (the dashed step at the right of the chart)."
    if proposed and current:
        return f"{name}: keep {current} (the dashed step at the right of the chart)."
    if proposed:
        return f"{name}: no plan in force; {proposed} proposed (the dashed step at the right of the chart)."
    if current:
        return f"{name}: no new dose proposed; the plan in force is {current}."
    return f"{name}: no plan in force and no dose proposed."


def _cells(series: Series, week: Week) -> dict[str, str]:
    steps = series.measure == "steps"
    number = "{:,.0f}" if steps else "{:.0f}"
    return {
        "week": f"{week.start:%d %b} to {week.end:%d %b %Y}",
        "planned": "" if week.planned is None else number.format(week.planned),
        "done": "" if week.done is None else number.format(week.done),
        "adherence": "" if week.adherence is None else f"{week.adherence:.0%}",
        "pain_mean": "" if week.pain_mean is None else f"{week.pain_mean:.1f}",
        "pain_median": "" if week.pain_median is None else f"{week.pain_median:.1f}",
        "flare": "yes" if week.flare else "",
    }


def chart_page(series: Series, expires: datetime, token: str) -> str:
    # matplotlib loads with the first chart, not when a worker starts: hook workers boot as fast as before.
    from cds.charts.render import render_svg, titles

    rows = weeks(series)
    steps = series.measure == "steps"
    title, _ = titles(series)
    return _templates().get_template("chart.html").render(
        title=title, headline=headline(series), svg=Markup(render_svg(series, rows)),  # drawn here from numbers
        rows=[_cells(series, w) for w in reversed(rows)],
        planned_unit="steps/day" if steps else "min/week", done_unit="mean steps/day" if steps else "min",
        expires=f"{expires:%Y-%m-%d %H:%M} UTC", token=token)


def plan_page(series: Series, texts: PatientTexts, accepted: bool = False) -> str:
    """The take-home plan of the call the card belongs to, in the patient's language (English, saying so, where we
    do not have it): it follows the call's leading card (`accepted`: the clinician accepted that card, so its
    proposed dose is the plan)."""
    choice = texts.choose(series.language)
    words = choice.catalogue
    codes = series.codes or [series.code]
    proposed = series.lead_proposed if series.codes else series.proposed
    this_week, sections = plan_sentences(words, codes, series.lead_rule, series.measure, series.plan, proposed,
                                         accepted)
    return _templates().get_template("plan.html").render(
        plan=words.plan, lang=words.language, fallback=choice.fallback, this_week=this_week, sections=sections,
        made_on=words.made_on.format(date=words.day(series.now.date())))
