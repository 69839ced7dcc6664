"""`pacing-cds feedback report --html FILE`: how often clinicians override each rule, week by week, and why.

Alert fatigue is the main reason decision support fails, so after a rule goes live the CDS committee watches its
override rate. Counted from the audit: each card the service issued (issued_card) once, by its latest feedback (the
newest outcomeTimestamp; of two at the same instant, the later arrival), in the ISO week (Monday to Sunday, UTC) it
was issued. The rules overridden more often than `override_rate_alert` over the last `override_alert_weeks` weeks,
with at least `override_alert_min_cards` cards with feedback (rules/parameters.yaml), are listed first.

The page is one self-contained HTML file (style inline, charts as inline SVG, no script) written readable by its
owner only: its comments and counts can be matched with audit data. Override codes, displays and comments are the
client's text and are escaped wherever they appear.
"""

from __future__ import annotations

import html
import io
import re
import sys
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import matplotlib
from matplotlib.backends.backend_svg import FigureCanvasSVG
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from sqlalchemy import and_, case, func, null, select

from cds.charts.render import BLUE, GREEN, ORANGE_LINE, RC, VERMILLION
from cds.clock import parse_now
from cds.feedback_report import reason_names
from cds.knowledge import Knowledge, RuleError, load_knowledge
from cds.knowledge.schema import RuleSetInfo
from cds.logs import escape_controls
from cds.panel.report import STYLE, private_file
from cds.reports.firing import NO_RULE, utc_day
from cds.settings import Settings
from cds.store.database import SILENT, FeedbackItem, IssuedCard, Store

PARAMETERS = ("override_rate_alert", "override_alert_weeks", "override_alert_min_cards")
REPORT_WEEKS = 12  # the weeks of trend on the page, the report's week the last
COMMENTS_SHOWN = 10  # the newest override comments listed for a flagged rule
COMMENT_CHARS = 500  # a longer comment is cut (a client may send 4000 characters)
DISMISSED_NOTE = ("CDS Hooks 2.0 feedback has only two outcomes, accepted and overridden, so a card shown with no "
                  "feedback at all was dismissed or ignored: the two cannot be told apart.")
NONE = "–"

Reason = tuple[str | None, str | None]  # (system, code) of an override reason; (None, None) when none was given


class RuleKey(NamedTuple):
    """A rule by its id; a card issued before rules were recorded (rule_id null) falls under its topic instead."""

    rule_id: str | None
    topic: str | None = None

    @property
    def label(self) -> str:
        if self.rule_id is not None:
            return self.rule_id
        return f"topic {self.topic or NONE} {NO_RULE}"

    def order(self) -> tuple[bool, str]:
        """Rules by id, then the topics of cards whose rule was not recorded."""
        return self.rule_id is None, self.label


class DayCount(NamedTuple):
    """Cards of one rule, recorded rule version, UTC day, mode, latest outcome and override reason."""

    rule: RuleKey
    version: str | None
    day: date
    mode: str
    outcome: str | None  # None: no feedback on the card
    reason: Reason
    cards: int


@dataclass
class Counts:
    """Cards counted once each: shown (and of those accepted, overridden or dismissed) and silent."""

    shown: int = 0
    accepted: int = 0
    overridden: int = 0
    dismissed: int = 0  # shown with no feedback at all
    silent: int = 0  # would-be cards of a rule in pilot: never returned, no feedback possible
    reasons: Counter[Reason] = field(default_factory=Counter)  # the overridden cards by reason

    @property
    def with_feedback(self) -> int:
        return self.accepted + self.overridden

    @property
    def rate(self) -> float | None:
        """Overridden / (accepted + overridden); None with no feedback."""
        return self.overridden / self.with_feedback if self.with_feedback else None

    def merge(self, other: Counts) -> None:
        """Add another period's counts to these."""
        self.shown += other.shown
        self.accepted += other.accepted
        self.overridden += other.overridden
        self.dismissed += other.dismissed
        self.silent += other.silent
        self.reasons.update(other.reasons)

    def add(self, row: DayCount) -> None:
        """Count a day's cards in the column their mode and latest outcome put them in."""
        if row.mode == SILENT:
            self.silent += row.cards
            return
        self.shown += row.cards
        if row.outcome == "accepted":
            self.accepted += row.cards
        elif row.outcome == "overridden":
            self.overridden += row.cards
            self.reasons[row.reason] += row.cards
        else:
            self.dismissed += row.cards


@dataclass
class RuleWeeks:
    """One rule's counts per week (keyed by the week's Monday), and the rule versions its cards recorded."""

    rule: RuleKey
    weeks: dict[date, Counts] = field(default_factory=dict)
    versions: set[str] = field(default_factory=set)

    def week(self, monday: date) -> Counts:
        return self.weeks.get(monday, Counts())

    def total(self) -> Counts:
        total = Counts()
        for counts in self.weeks.values():
            total.merge(counts)
        return total


@dataclass(frozen=True)
class Alert:
    """The parameters of the alert, from rules/parameters.yaml."""

    rate: float  # override_rate_alert
    weeks: int  # override_alert_weeks
    min_cards: int  # override_alert_min_cards

    @classmethod
    def of(cls, values: Mapping[str, float | int]) -> Alert:
        """The alert of these parameter values; KeyError naming the first of PARAMETERS missing."""
        return cls(float(values["override_rate_alert"]), int(values["override_alert_weeks"]),
                   int(values["override_alert_min_cards"]))

    def window(self, day: date) -> tuple[date, date]:
        """The first and last day of the alert's weeks, up to and including the report's day."""
        return day - timedelta(days=7 * self.weeks - 1), day

    def flags(self, counts: Counts) -> bool:
        rate = counts.rate
        return rate is not None and rate > self.rate and counts.with_feedback >= self.min_cards


class Comment(NamedTuple):
    """The comment of a card's latest outcome, an override."""

    day: date
    reason: Reason
    text: str


def monday(day: date) -> date:
    """The Monday that starts the day's ISO week."""
    return day - timedelta(days=day.weekday())


def _start_of(day: date) -> datetime:
    """The day's first instant, UTC."""
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _latest(start: date, end: date) -> Any:
    """Each card's latest feedback item (rank 1), for the cards issued from `start` up to `end`."""
    feedback, issued = FeedbackItem.__table__, IssuedCard.__table__
    card = (feedback.c.service_id, feedback.c.card_uuid)
    rank = func.row_number().over(partition_by=card, order_by=(feedback.c.outcome_timestamp.desc(),
                                                                feedback.c.id.desc()))
    in_period = select(issued.c.card_uuid).where(issued.c.issued_at >= _start_of(start),
                                                 issued.c.issued_at < _start_of(end))
    return (select(*card, feedback.c.outcome, feedback.c.override_system, feedback.c.override_code,
                   feedback.c.user_comment, feedback.c.outcome_timestamp, rank.label("rank"))
            .where(feedback.c.card_uuid.in_(in_period)).subquery("latest"))


def _with_latest(latest: Any) -> Any:
    """Issued cards joined to their latest feedback item, if any."""
    issued = IssuedCard.__table__
    return issued.outerjoin(latest, and_(latest.c.card_uuid == issued.c.card_uuid,
                                         latest.c.service_id == issued.c.service_id, latest.c.rank == 1))


def day_counts(store: Store, start: date, end: date) -> list[DayCount]:
    """The cards issued from `start` up to (not including) `end`, in UTC days, each once by its latest outcome: grouped
    in SQL by rule, day, mode, outcome and override reason, so that the rows grow with rules and days, not cards."""
    issued = IssuedCard.__table__
    latest = _latest(start, end)
    day = utc_day(store, issued.c.issued_at)
    topic = case((issued.c.rule_id.is_(None), issued.c.topic), else_=null())
    columns = (issued.c.rule_id, topic, issued.c.rule_version, day, issued.c.mode, latest.c.outcome,
               latest.c.override_system, latest.c.override_code)
    query = (select(*columns, func.count()).select_from(_with_latest(latest))
             .where(issued.c.issued_at >= _start_of(start), issued.c.issued_at < _start_of(end))
             .group_by(*columns))
    with store.engine.connect() as conn:
        return [DayCount(RuleKey(rule_id, topic_code), version, date.fromisoformat(str(on)), mode, outcome,
                         (system, code), int(n))
                for rule_id, topic_code, version, on, mode, outcome, system, code, n in conn.execute(query)]


def fold_weeks(rows: Iterable[DayCount]) -> dict[RuleKey, RuleWeeks]:
    """Days folded into ISO weeks (keyed by their Monday), per rule."""
    rules: dict[RuleKey, RuleWeeks] = {}
    for row in rows:
        weeks = rules.setdefault(row.rule, RuleWeeks(row.rule))
        weeks.weeks.setdefault(monday(row.day), Counts()).add(row)
        if row.version:
            weeks.versions.add(row.version)
    return rules


def weekly_counts(store: Store, start: date, end: date) -> dict[RuleKey, RuleWeeks]:
    """Per rule and ISO week (Monday start, UTC) of issue, from `start` up to (not including) `end`: cards shown,
    accepted, overridden (by reason), dismissed and silent, each card once by its latest outcome."""
    return fold_weeks(day_counts(store, start, end))


def window_counts(rows: Iterable[DayCount], first: date, last: date) -> dict[RuleKey, Counts]:
    """Per rule, the cards issued from `first` to `last` (both included)."""
    totals: dict[RuleKey, Counts] = {}
    for row in rows:
        if first <= row.day <= last:
            totals.setdefault(row.rule, Counts()).add(row)
    return totals


def flagged(window: dict[RuleKey, Counts], alert: Alert) -> list[RuleKey]:
    """The rules whose override rate over the window passes the alert, the highest rate first."""
    found = [rule for rule, counts in window.items() if alert.flags(counts)]
    return sorted(found, key=lambda rule: (-(window[rule].rate or 0.0), rule.order()))


def override_comments(store: Store, rule: RuleKey, first: date, last: date,
                      limit: int = COMMENTS_SHOWN) -> list[Comment]:
    """The newest comments of the overrides (latest outcomes) of a rule's cards issued from `first` to `last`."""
    issued = IssuedCard.__table__
    end = last + timedelta(days=1)
    latest = _latest(first, end)
    which = (issued.c.rule_id == rule.rule_id if rule.rule_id is not None else
             and_(issued.c.rule_id.is_(None),
                  issued.c.topic.is_(None) if rule.topic is None else issued.c.topic == rule.topic))
    query = (select(latest.c.outcome_timestamp, latest.c.override_system, latest.c.override_code,
                    latest.c.user_comment)
             .select_from(_with_latest(latest))
             .where(which, latest.c.outcome == "overridden", latest.c.user_comment.is_not(None),
                    latest.c.user_comment != "", issued.c.issued_at >= _start_of(first),
                    issued.c.issued_at < _start_of(end))
             .order_by(latest.c.outcome_timestamp.desc(), latest.c.card_uuid).limit(limit))
    with store.engine.connect() as conn:
        return [Comment((when.astimezone(UTC) if when.tzinfo else when).date(), (system, code), text)
                for when, system, code, text in conn.execute(query)]


# ---------------------------------------------------------------- the page


@dataclass(frozen=True)
class RuleInfo:
    """A rule as the current rules/ describe it."""

    title: str
    version: str
    mode: str  # live | silent


@dataclass
class Report:
    """Everything the page shows."""

    day: date  # the report's day (UTC)
    weeks: list[date]  # the Mondays of the period, oldest first
    alert: Alert
    rules: dict[RuleKey, RuleWeeks]
    window: dict[RuleKey, Counts]
    flags: list[RuleKey]
    comments: dict[RuleKey, list[Comment]]
    known: dict[str, RuleInfo]  # the current rules by id
    info: RuleSetInfo  # the override reasons and their displays
    ruleset: str  # name and version of the rule set
    generated: str


def period_weeks(day: date, alert: Alert) -> list[date]:
    """The Mondays of the period: REPORT_WEEKS weeks to the report's, and always the whole alert window."""
    count = max(REPORT_WEEKS, alert.weeks + 1)
    last = monday(day)
    return [last - timedelta(days=7 * k) for k in range(count - 1, -1, -1)]


def build_report(store: Store, knowledge: Knowledge, now: datetime, generated: str) -> Report:
    """Count the period's cards, flag the rules past the alert and fetch the flagged rules' comments."""
    alert = Alert.of(knowledge.values)
    day = now.astimezone(UTC).date()
    weeks = period_weeks(day, alert)
    rows = day_counts(store, weeks[0], day + timedelta(days=1))
    first, last = alert.window(day)
    window = window_counts(rows, first, last)
    flags = flagged(window, alert)
    return Report(
        day=day, weeks=weeks, alert=alert, rules=fold_weeks(rows), window=window, flags=flags,
        comments={rule: override_comments(store, rule, first, last) for rule in flags},
        known={c.rule.id: RuleInfo(c.rule.title, c.rule.version, c.rule.mode) for c in knowledge.rules},
        info=knowledge.info, ruleset=f"{knowledge.info.name} {knowledge.version}", generated=generated)


STYLE_EXTRA = """
h3{font-size:15px;margin:22px 0 4px} section.rule{margin-bottom:30px} caption{text-align:left;color:#5b6475;
padding:4px 0} figure{margin:8px 0} figcaption{color:#5b6475;font-size:13px;max-width:60em}
.flag{border-left:4px solid #D55E00;padding:2px 0 2px 12px;margin:12px 0} .silent{color:#7a3d00;font-weight:600}
tr.total td{font-weight:600} .comment{white-space:pre-wrap}
"""
COLUMNS = ("week starting", "shown", "accepted", "overridden", "dismissed", "silent", "override rate")


def _e(value: object) -> str:
    """Any value as inert HTML text (control characters made visible too)."""
    return html.escape(escape_controls(str(value)))


def _rate(counts: Counts) -> str:
    rate = counts.rate
    return NONE if rate is None else f"{rate:.1%}"


def _title(report: Report, rule: RuleKey) -> str:
    known = report.known.get(rule.rule_id or "")
    return known.title if known else rule.label


def _mode(report: Report, rule: RuleKey, weeks: RuleWeeks) -> str:
    """What the rule is now, as HTML; a silent rule's counts are would-be counts."""
    recorded = ", ".join(sorted(weeks.versions)) or NONE
    if rule.rule_id is None:
        return f"cards issued before rules were recorded, topic <code>{_e(rule.topic or NONE)}</code>"
    known = report.known.get(rule.rule_id)
    if known is None:
        return f"rule <code>{_e(rule.rule_id)}</code>, not in the current rules; cards of version {_e(recorded)}"
    mode = ('<span class="silent">silent: would-be counts</span> (a rule in pilot: its cards are audited, never '
            'shown, so no feedback is possible)' if known.mode == SILENT else "live")
    return (f"rule <code>{_e(rule.rule_id)}</code> version {_e(known.version)} (cards of version {_e(recorded)}); "
            f"mode {mode}")


def _reason_rows(report: Report, reasons: Counter[Reason]) -> str:
    if not reasons:
        return "<p>No overrides.</p>"
    named: Counter[tuple[str, str]] = Counter()
    for (system, code), n in reasons.items():
        named[reason_names(report.info, system, code)] += n
    rows = "".join(f"<tr><td><code>{_e(code)}</code></td><td>{_e(display)}</td><td class=n>{n}</td></tr>"
                   for (code, display), n in sorted(named.items(), key=lambda item: (-item[1], item[0])))
    return f"<table class=reasons><tr><th>code</th><th>reason</th><th>cards</th></tr>{rows}</table>"


def _week_table(report: Report, rule: RuleKey, weeks: RuleWeeks) -> str:
    def cells(counts: Counts) -> str:
        return "".join(f"<td class=n>{n}</td>" for n in (counts.shown, counts.accepted, counts.overridden,
                                                          counts.dismissed, counts.silent)) + \
            f"<td class=n>{_rate(counts)}</td>"

    body = "".join(f"<tr><td>{w.isoformat()}</td>{cells(weeks.week(w))}</tr>" for w in report.weeks)
    head = "".join(f"<th>{c}</th>" for c in COLUMNS)
    return (f"<table class=weeks><caption>Cards per week of issue, {_e(rule.label)}; the week of "
            f"{report.weeks[-1].isoformat()} runs to the report's day</caption><tr>{head}</tr>{body}"
            f"<tr class=total><td>all {len(report.weeks)} weeks</td>{cells(weeks.total())}</tr></table>")


LINES = {  # name: (colour, line style, marker): Okabe-Ito colours, and each line also differs by style and marker
    "shown": (BLUE, "solid", "o"),
    "accepted": (GREEN, "dashed", "s"),
    "overridden": (VERMILLION, "dotted", "^"),
    "silent (would-be)": (ORANGE_LINE, "dashdot", "D"),
}
LINE_WORDS = {"solid": "solid line", "dashed": "dashed line", "dotted": "dotted line", "dashdot": "dash-dot line",
              "o": "circles", "s": "squares", "^": "triangles", "D": "diamonds"}


def trend_svg(weeks: list[date], series: dict[str, list[int]], label: str, prefix: str) -> str:
    """A small line chart of cards per week as an inline SVG element (no XML prolog, no script, no date stamp), its
    ids and the references to them prefixed with `prefix` so that the charts of one page share no id."""
    with matplotlib.rc_context(RC):
        figure = Figure(figsize=(7.2, 2.6))
        figure.subplots_adjust(left=0.08, right=0.99, top=0.86, bottom=0.2)
        axes = figure.add_subplot()
        xs = list(range(len(weeks)))
        for name, values in series.items():
            colour, style, marker = LINES[name]
            axes.plot(xs, values, color=colour, linestyle=style, marker=marker, markersize=5, linewidth=1.8,
                      label=name)
        step = 1 if len(weeks) <= REPORT_WEEKS else 2
        axes.set_xticks(xs[::step], [w.strftime("%d %b") for w in weeks[::step]], fontsize=8)
        axes.set_xlim(-0.4, len(weeks) - 0.6)
        axes.set_ylim(0, max((v for values in series.values() for v in values), default=0) * 1.15 or 1)
        axes.yaxis.set_major_locator(MaxNLocator(integer=True, nbins=5))
        axes.set_ylabel("cards per week", fontsize=9)
        axes.grid(axis="y", color="#e3e6ec", linewidth=0.8)
        axes.spines[["top", "right"]].set_visible(False)
        figure.legend(loc="upper left", ncols=len(series), frameon=False, fontsize=9)
        out = io.StringIO()
        FigureCanvasSVG(figure).print_svg(out, metadata={"Date": None})
    text = out.getvalue()
    svg = _ID_OR_REFERENCE.sub(lambda m: f"{m[1]}{prefix}-", text[text.index("<svg"):])
    return svg.replace("<svg ", f'<svg role="img" aria-label="{html.escape(label)}" ', 1)


# matplotlib's SVG names its groups, clip paths and markers (id="...") and refers to them as href="#..." or url(#...).
_ID_OR_REFERENCE = re.compile(r'(\bid="|href="#|url\(#)')


def _figure(report: Report, rule: RuleKey, total: Counts, weeks: RuleWeeks, prefix: str) -> str:
    """The rule's trend chart (shown, accepted and overridden if it showed cards, would-be cards if it had silent
    ones) with a caption that says what each line is; the table above has the numbers."""
    names = (["shown", "accepted", "overridden"] if total.shown else []) + (["silent (would-be)"] if total.silent
                                                                            else [])
    series = {name: [getattr(weeks.week(w), name.split()[0]) for w in report.weeks] for name in names}
    words = "; ".join(f"{name}: {LINE_WORDS[LINES[name][1]]}, {LINE_WORDS[LINES[name][2]]}" for name in names)
    label = f"Cards per week, {rule.label}"
    return (f"<figure>{trend_svg(report.weeks, series, label, prefix)}<figcaption>{_e(label)}, weeks starting "
            f"{report.weeks[0].isoformat()} to {report.weeks[-1].isoformat()}. {_e(words)}. The table above gives "
            f"the same numbers.</figcaption></figure>")


def _rule_section(report: Report, rule: RuleKey, number: int) -> str:
    weeks = report.rules[rule]
    total = weeks.total()
    flag = " (flagged)" if rule in report.flags else ""
    reasons = (f"<h4>Overrides by reason over the {len(report.weeks)} weeks (latest outcome of each card)</h4>"
               f"{_reason_rows(report, total.reasons)}" if total.shown else
               "<p class=meta>No card shown in these weeks, so no feedback.</p>")
    return (f'<section class=rule data-rule="{_e(rule.label)}"><h3>{_e(_title(report, rule))}{flag}</h3>'
            f"<p class=meta>{_mode(report, rule, weeks)}</p>{_week_table(report, rule, weeks)}"
            f"{_figure(report, rule, total, weeks, f'chart{number}')}{reasons}</section>")


def _flag_section(report: Report) -> str:
    first, last = report.alert.window(report.day)
    if not report.flags:
        return (f"<h2>Flagged for review (0)</h2><p>No rule was overridden at more than "
                f"{report.alert.rate:.0%} of at least {report.alert.min_cards} cards with feedback issued from "
                f"{first.isoformat()} to {last.isoformat()}.</p>")
    parts = [f"<h2>Flagged for review ({len(report.flags)})</h2>"]
    for rule in report.flags:
        counts = report.window[rule]
        comments = "".join(
            f"<li>{c.day.isoformat()} <code>{_e(c.reason[1] or NONE)}</code>: "
            f"<span class=comment>{_e(c.text[:COMMENT_CHARS])}</span></li>" for c in report.comments.get(rule, []))
        parts.append(
            f'<div class=flag data-flag="{_e(rule.label)}"><h3>{_e(_title(report, rule))}</h3>'
            f"<p><code>{_e(rule.label)}</code>: override rate <strong>{_rate(counts)}</strong> of cards issued "
            f"from {first.isoformat()} to {last.isoformat()}: {counts.overridden} overridden, {counts.accepted} "
            f"accepted ({counts.with_feedback} with feedback); {counts.shown} shown, {counts.dismissed} "
            f"dismissed or ignored.</p><p class=meta>Override reasons</p>{_reason_rows(report, counts.reasons)}"
            + (f"<p class=meta>The newest override comments</p><ul>{comments}</ul>" if comments else "")
            + "</div>")
    return "".join(parts)


def page(report: Report) -> str:
    """One HTML file with its style inline and no script, link or image from anywhere."""
    alert = report.alert
    first, last = alert.window(report.day)
    order = report.flags + sorted((r for r in report.rules if r not in report.flags), key=RuleKey.order)
    idle = sorted(set(report.known) - {r.rule_id for r in report.rules})
    period = f"{report.weeks[0].isoformat()} to {report.day.isoformat()}"
    rules_part = ("".join(_rule_section(report, rule, n) for n, rule in enumerate(order, 1)) if order
                  else f"<p>No cards recorded from {period}.</p>")
    idle_part = (f"<p class=meta>Rules with no cards from {period}: {_e(', '.join(idle))}.</p>" if idle and order
                 else "")
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        "<meta name=viewport content='width=device-width,initial-scale=1'>"
        f"<title>Override trends {report.day.isoformat()}</title><style>{STYLE}{STYLE_EXTRA}</style></head><body>"
        f"<h1>Override trends per rule</h1><p class=meta>Report's day {report.day.isoformat()} (UTC) · "
        f"{len(report.weeks)} weeks from {report.weeks[0].isoformat()} · rule set {_e(report.ruleset)} · "
        f"generated {_e(report.generated)}</p>"
        f"<p>A rule is flagged when the cards it issued over the last {alert.weeks} weeks up to the report's day "
        f"({first.isoformat()} to {last.isoformat()}) were overridden at more than {alert.rate:.0%} of the cards "
        f"with feedback, with at least {alert.min_cards} cards with feedback. Parameters (rules/parameters.yaml): "
        f"<code>override_rate_alert</code> = {alert.rate:g}, <code>override_alert_weeks</code> = {alert.weeks}, "
        f"<code>override_alert_min_cards</code> = {alert.min_cards}.</p>"
        "<p class=meta>Each card is counted once, in the week (Monday to Sunday, UTC) it was issued, by its latest "
        "feedback (the newest outcome timestamp; of two at the same instant, the later received). "
        "<strong>Shown</strong>: cards returned to the EHR. <strong>Accepted</strong>, <strong>overridden</strong>: "
        f"their latest feedback. <strong>Dismissed</strong>: {_e(DISMISSED_NOTE)} <strong>Silent</strong>: would-be "
        "cards of a rule in pilot (or of a service in silent mode), audited and never returned, so no feedback is "
        "possible. <strong>Override rate</strong>: overridden / (accepted + overridden).</p>"
        + _flag_section(report)
        + f"<h2>Per rule, week by week</h2>{rules_part}{idle_part}</body></html>\n")


# ---------------------------------------------------------------- the command


def overrides_command(settings: Settings, html_path: str, now_text: str | None, out: Any = sys.stdout) -> int:
    """Write the override report to `html_path` (0600); print one line per flagged rule and the path written."""
    try:
        now: datetime | None = parse_now(now_text, settings)
    except ValueError:
        now = None
    if now is None:
        print(f"pacing-cds: --now {escape_controls((now_text or '')[:40])!r} is not a date or date-time "
              "(YYYY-MM-DD or ISO 8601)", file=sys.stderr)
        return 2
    path = Path(html_path)
    if not path.parent.is_dir():
        print(f"pacing-cds: cannot write {escape_controls(html_path)}: folder {escape_controls(str(path.parent))} "
              "does not exist", file=sys.stderr)
        return 2
    try:
        knowledge = load_knowledge(settings.rules_path)
    except RuleError as exc:
        print(f"pacing-cds: {len(exc.problems)} problem(s) in {settings.rules_path}:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 2
    missing = [name for name in PARAMETERS if name not in knowledge.values]
    if missing:
        print(f"pacing-cds: {settings.rules_path / 'parameters.yaml'} lacks {', '.join(missing)}", file=sys.stderr)
        return 2
    store = Store(settings.database_url)
    try:
        store.create_schema()
        report = build_report(store, knowledge, now, datetime.now(UTC).isoformat(timespec="seconds"))
    finally:
        store.close()
    try:
        with private_file(path) as handle:
            handle.write(page(report))
    except OSError as exc:
        print(f"pacing-cds: cannot write {escape_controls(html_path)}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    first, last = report.alert.window(report.day)
    for rule in report.flags:
        counts = report.window[rule]
        print(f"flagged: {escape_controls(rule.label)}: override rate {_rate(counts)} ({counts.overridden} of "
              f"{counts.with_feedback} cards with feedback, issued {first.isoformat()} to {last.isoformat()})",
              file=out)
    print(f"wrote {escape_controls(html_path)}", file=out)
    return 0
