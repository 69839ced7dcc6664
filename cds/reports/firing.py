"""`pacing-cds report firing`: how often each rule fires, per service and day, shown or silent.

The numbers a CDS committee reads before a rule in pilot goes live: per service, rule and day, the service's
evaluations (calls answered), the rule's cards shown, its cards silent (evaluated and audited, not returned) and the
distinct patients they were for. Counted from the audit (audit_event and issued_card), so a report covers every
instance that writes to the same database.
"""

from __future__ import annotations

import csv
import html
import io
import os
import sys
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import case, func, select

from cds.logs import escape_controls
from cds.settings import Settings
from cds.store.database import SHOWN, SILENT, AuditEvent, IssuedCard, Store

COLUMNS = ("service", "rule", "day", "evaluations", "shown", "silent", "patients")
NO_RULE = "(rule not recorded)"


@dataclass(frozen=True)
class Firing:
    """One service, rule and day."""

    service: str
    rule: str
    day: str
    evaluations: int  # the service's calls answered that day (every rule of the service was evaluated in each)
    shown: int
    silent: int
    patients: int  # distinct patients of the rule's cards that day, shown or silent

    @property
    def rate(self) -> float | None:
        """The share of the day's evaluations in which the rule made a card, shown or silent."""
        return (self.shown + self.silent) / self.evaluations if self.evaluations else None


def utc_day(store: Store, column: Any) -> Any:
    """The UTC day of a timestamp column, as the backend computes it."""
    if store.engine.dialect.name == "postgresql":
        return func.date(func.timezone("UTC", column))
    return func.date(column)  # SQLite keeps UTC timestamps as ISO text


def firing(store: Store, since: date | None = None) -> list[Firing]:
    """Per service, rule and day (from `since` on): evaluations, cards shown, cards silent, distinct patients."""
    audit, issued = AuditEvent.__table__, IssuedCard.__table__
    start = datetime(since.year, since.month, since.day, tzinfo=UTC) if since else None
    audit_day = utc_day(store, audit.c.time)
    calls = (select(audit.c.service_id, audit_day, func.count())
             .where(audit.c.status == 200).group_by(audit.c.service_id, audit_day))
    card_day = utc_day(store, issued.c.issued_at)
    rule = func.coalesce(issued.c.rule_id, issued.c.topic)
    cards = (select(issued.c.service_id, rule, issued.c.rule_id.is_(None), card_day,
                    func.sum(_count_of(issued.c.mode, SHOWN)), func.sum(_count_of(issued.c.mode, SILENT)),
                    func.count(func.distinct(issued.c.patient_id)))
             .group_by(issued.c.service_id, rule, issued.c.rule_id.is_(None), card_day))
    if start is not None:
        calls = calls.where(audit.c.time >= start)
        cards = cards.where(issued.c.issued_at >= start)
    with store.engine.connect() as conn:
        evaluations = {(service, str(day)): int(n) for service, day, n in conn.execute(calls)}
        rows = [Firing(service, f"{name} {NO_RULE}" if unrecorded else name, str(day),
                       evaluations.get((service, str(day)), 0), int(shown or 0), int(silent or 0), int(patients))
                for service, name, unrecorded, day, shown, silent, patients in conn.execute(cards)]
    return sorted(rows, key=lambda r: (r.service, r.rule, r.day))


def _count_of(column: Any, value: str) -> Any:
    return case((column == value, 1), else_=0)


def modes(settings: Settings) -> dict[str, str]:
    """Each rule's mode in the rules now (live or silent), or nothing when they cannot be loaded."""
    from cds.engine import RuleError, load_knowledge

    try:
        knowledge = load_knowledge(settings.rules_path)
    except RuleError:
        return {}
    return {c.rule.id: c.rule.mode for c in knowledge.rules}


def as_csv(rows: list[Firing]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for r in rows:
        writer.writerow([r.service, r.rule, r.day, r.evaluations, r.shown, r.silent, r.patients])
    return out.getvalue()


def _rate(row: Firing) -> str:
    return "-" if row.rate is None else f"{row.rate:.1%}"


def as_table(rows: list[Firing], mode_of: dict[str, str]) -> str:
    from cds.feedback_report import print_table

    out = io.StringIO()
    if not rows:
        return "No cards recorded.\n"
    print_table(["service", "rule", "mode now", "day", "evaluations", "shown", "silent", "fired", "patients"],
                [[escape_controls(r.service), escape_controls(r.rule), mode_of.get(r.rule, "-"), r.day, r.evaluations,
                  r.shown, r.silent, _rate(r), r.patients] for r in rows], out)
    return out.getvalue()


def as_html(rows: list[Firing], mode_of: dict[str, str], since: date | None, generated: str) -> str:
    """A page for the committee: the totals per rule over the period (silent rules first), then every day."""
    totals: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    days: dict[str, set[str]] = defaultdict(set)
    calls: dict[tuple[str, str], int] = {}
    for r in rows:
        total = totals[(r.service, r.rule)]
        total[0] += r.shown
        total[1] += r.silent
        total[2] += r.patients
        calls[(r.service, r.day)] = r.evaluations
        days[r.service].add(r.day)
    evaluations = {service: sum(n for (s, _), n in calls.items() if s == service) for service in days}
    e = html.escape
    summary = "".join(
        f"<tr><td>{e(service)}</td><td>{e(rule)}</td><td>{e(mode_of.get(rule, '-'))}</td>"
        f"<td class=n>{evaluations[service]}</td><td class=n>{shown}</td><td class=n>{silent}</td>"
        f"<td class=n>{(shown + silent) / evaluations[service]:.1%}</td><td class=n>{patients}</td></tr>"
        if evaluations[service] else
        f"<tr><td>{e(service)}</td><td>{e(rule)}</td><td>{e(mode_of.get(rule, '-'))}</td><td class=n>0</td>"
        f"<td class=n>{shown}</td><td class=n>{silent}</td><td class=n>-</td><td class=n>{patients}</td></tr>"
        for (service, rule), (shown, silent, patients) in sorted(
            totals.items(), key=lambda item: (mode_of.get(item[0][1]) != "silent", item[0])))
    daily = "".join(
        f"<tr><td>{e(r.service)}</td><td>{e(r.rule)}</td><td>{e(r.day)}</td><td class=n>{r.evaluations}</td>"
        f"<td class=n>{r.shown}</td><td class=n>{r.silent}</td><td class=n>{_rate(r)}</td>"
        f"<td class=n>{r.patients}</td></tr>" for r in rows)
    period = f"from {since.isoformat()}" if since else "every day audited"
    head = ("<tr><th>service</th><th>rule</th><th>mode now</th><th>evaluations</th><th>shown</th><th>silent</th>"
            "<th>fired</th><th>patient-days</th></tr>")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Rule firing report</title>
<style>body{{font-family:system-ui,sans-serif;margin:2rem;max-width:70rem}}table{{border-collapse:collapse;
margin-bottom:2rem}}th,td{{border:1px solid #bbb;padding:.25rem .5rem;text-align:left}}td.n{{text-align:right}}
</style></head><body>
<h1>Rule firing report</h1>
<p>{e(period)}; generated {e(generated)}. <strong>Shown</strong>: cards returned to the EHR. <strong>Silent</strong>:
cards of a rule in pilot (or of a service in silent mode), evaluated and audited with what they would have said, not
returned. <strong>Fired</strong>: cards shown or silent per evaluation of the service (a call answered).</p>
<h2>Per rule over the period</h2>
{"<p>No cards recorded.</p>" if not rows else f"<table>{head}{summary}</table>"}
<p>Patient-days: distinct patients per day, added over the days.</p>
<h2>Per day</h2>
{"" if not rows else '<table><tr><th>service</th><th>rule</th><th>day</th><th>evaluations</th><th>shown</th>'
 '<th>silent</th><th>fired</th><th>patients</th></tr>' + daily + '</table>'}
</body></html>
"""


def firing_command(settings: Settings, since_text: str | None, form: str, out_path: str | None,
                   out: Any = sys.stdout) -> int:
    """The report in the format asked for, to a file (readable by its owner only) or standard output."""
    from sqlalchemy.engine import make_url

    since = None
    if since_text is not None:
        try:
            since = date.fromisoformat(since_text)
        except ValueError:
            print(f"pacing-cds: --since {escape_controls(since_text[:40])!r} is not a date (YYYY-MM-DD)",
                  file=sys.stderr)
            return 2
    store = Store(settings.database_url)
    try:
        store.create_schema()
        rows = firing(store, since)
    finally:
        store.close()
    mode_of = modes(settings)
    if form == "csv":
        text = as_csv(rows)
    elif form == "html":
        text = as_html(rows, mode_of, since, datetime.now(UTC).isoformat(timespec="seconds"))
    else:
        url = make_url(settings.database_url).render_as_string(hide_password=True)
        text = f"Rule firing report ({url}{', from ' + since.isoformat() if since else ''})\n\n" + as_table(
            rows, mode_of)
    if out_path is None:
        out.write(text)
        return 0
    try:
        fd = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as exc:
        print(f"pacing-cds: cannot write {escape_controls(out_path)}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    print(f"wrote {escape_controls(out_path)} ({len(rows)} rows)", file=out)
    return 0
