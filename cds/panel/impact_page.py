"""impact.html: the impact of a rule change on one self-contained page in the look of worklist.html (its style
inline, no script, no link, every value escaped): the run, the dose recommendations before and after, the
patients changed, the red flags lost and gained, what differs in the rules, the examples, the export's problems."""

from __future__ import annotations

import html
from collections import Counter
from datetime import datetime
from typing import Any

from cds.knowledge.diff import RuleSetDiff
from cds.panel.impact_model import NONE, Impact, counts, example_flags, row_flags, transitions
from cds.panel.report import STYLE, cell, codes_html, not_listed_text, now_text

IMPACT_STYLE = """
td.same{background:#f7f8fa} td.moved{background:#fff1dc}
.ids{display:block;white-space:nowrap;color:#5b6475;font-size:11px}
.added{color:#145c20;font-weight:600} .removed{color:#8a1111;font-weight:600} .changed{color:#7a3d00;font-weight:600}
ul.what{margin:0;padding-left:16px} .note{background:#eef3fb;padding:8px 12px;border-radius:4px}
"""
CHANGED_SHOWN = 500  # patients listed in the page; every one is in impact.csv
IDS_SHOWN = 3  # example patients in a cell of the transition table
PROBLEMS_SHOWN = 200


def page(impact: Impact, generated: datetime) -> str:
    """The whole page."""
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in impact.notes)
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        "<meta name=viewport content='width=device-width,initial-scale=1'>"
        f"<title>Rule change impact {html.escape(now_text(impact.now)[:10])}</title>"
        f"<style>{STYLE}{IMPACT_STYLE}</style></head><body>"
        "<h1>Rule change impact</h1>"
        + _run(impact, generated)
        + (f"<ul class=meta>{notes}</ul>" if notes else "")
        + (_panel(impact, impact.rows) if impact.rows is not None else "")
        + _rules(impact.diff)
        + _examples(impact)
        + (_problems(impact) if impact.rows is not None else "")
        + "</body></html>\n")


def _run(impact: Impact, generated: datetime) -> str:
    rows = [("rules before", f"{impact.before.title} (baseline {impact.baseline})"),
            ("rules after", f"{impact.after.title} ({impact.after.label})")]
    if impact.rows is not None:
        rows += [("as of", now_text(impact.now)), ("panel", impact.panel), ("patients", str(len(impact.rows))),
                 ("changed", str(len(impact.changed)))]
    if impact.examples is not None:
        rows += [("examples", f"{len(impact.examples)} compared, "
                              f"{sum(1 for e in impact.examples if e.changed)} changed")]
    rows += [("seconds", f"{impact.seconds:.1f}"), ("generated", now_text(generated))]
    silent = [f"{side}: {', '.join(ids)}" for side, ids in (("before", impact.before.silent_rules),
                                                              ("after", impact.after.silent_rules)) if ids]
    return ("<table>" + "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
            + "</table><p class=note>Rules in silent mode are evaluated as if live, under both rule sets: this is "
              "what the change does once live."
            + (html.escape(" Rules in silent mode: " + "; ".join(silent) + ".") if silent else "") + "</p>")


def _panel(impact: Impact, rows: list[dict[str, Any]]) -> str:
    return _transitions(rows) + _changed(impact.changed) + _flags(impact)


def _transitions(rows: list[dict[str, Any]]) -> str:
    """Rows: the dose recommendation before; columns: after; each cell its patients' count and a few of them."""
    moves = transitions(rows)
    order = [code for code, _ in counts(rows).most_common() if code != NONE]
    order += [NONE] if any(NONE in key for key in moves) else []
    head = "<tr><th>before \\ after</th>" + "".join(f"<th>{codes_html(c)}</th>" for c in order) + "</tr>"
    body = []
    for was in order:
        cells = []
        for now in order:
            ids = sorted(moves.get((was, now), []))
            if not ids:
                cells.append("<td></td>")
                continue
            shown = [i.removeprefix("Patient/") for i in ids[:IDS_SHOWN]] + (["…"] if len(ids) > IDS_SHOWN else [])
            cells.append(f"<td class='n {'same' if was == now else 'moved'}'><b>{len(ids)}</b>"
                         + "".join(f"<span class=ids>{html.escape(i)}</span>" for i in shown) + "</td>")
        body.append(f"<tr><th>{codes_html(was)}</th>{''.join(cells)}</tr>")
    moved = sum(len(ids) for (was, now), ids in moves.items() if was != now)
    return (f"<h2>Dose recommendation, before and after ({moved} patients move)</h2><p class=meta>Rows: the dose "
            f"recommendation under the rules before; columns: after; {NONE}: no dose recommendation (a patient the "
            f"rules are not for, or a gap). Each cell: its patients, and up to {IDS_SHOWN} of them.</p>"
            f"<table>{head}{''.join(body)}</table>")


def _changed(changed: list[dict[str, Any]]) -> str:
    head = ("patient", "before", "after", "dose before", "dose after", "red flags before", "red flags after")
    body = "".join(
        f"<tr><td>{cell(r['patient'])}</td><td>{codes_html(r['before'])}</td><td>{codes_html(r['after'])}</td>"
        f"<td>{cell(r['dose_before'])}</td><td>{cell(r['dose_after'])}</td><td>{cell(r['red_flags_before'])}</td>"
        f"<td>{cell(r['red_flags_after'])}</td></tr>" for r in changed[:CHANGED_SHOWN])
    more = (f"<p class=meta>The first {CHANGED_SHOWN}; all {len(changed)} are in impact.csv (changed true).</p>"
            if len(changed) > CHANGED_SHOWN else "")
    if not changed:
        return "<h2>Patients changed (0)</h2><p>None: every patient gets the same cards, dose and red flags.</p>"
    return (f"<h2>Patients changed ({len(changed)})</h2><p class=meta>Cards (their topic codes), the dose proposed "
            f"and the red flags, before and after.</p><table><tr>" + "".join(f"<th>{h}</th>" for h in head)
            + f"</tr>{body}</table>{more}")


def _flags(impact: Impact) -> str:
    """Who loses a red flag and who gains one: patients, then examples."""
    found: dict[str, list[tuple[str, list[str], str, str]]] = {"lost": [], "gained": []}
    for row in impact.rows or []:
        lost, gained = row_flags(row)
        for kind, flags in (("lost", lost), ("gained", gained)):
            if flags:
                found[kind].append((row["patient"], flags, row["before"], row["after"]))
    for example in impact.examples or []:
        lost, gained = example_flags(example)
        for kind, flags in (("lost", lost), ("gained", gained)):
            if flags:
                found[kind].append((f"example {example.name}", flags, example.before, example.after))
    parts = []
    for kind, entries in found.items():
        parts.append(f"<h2>Red flags {kind} ({len(entries)})</h2>")
        if not entries:
            parts.append("<p>None.</p>")
            continue
        body = "".join(f"<tr><td>{cell(who)}</td><td>{cell(' '.join(flags))}</td><td>{codes_html(before)}</td>"
                       f"<td>{codes_html(after)}</td></tr>" for who, flags, before, after in entries)
        parts.append(f"<table><tr><th>who</th><th>red flags {kind}</th><th>before</th><th>after</th></tr>{body}"
                     "</table>")
    return "".join(parts)


def _rules(diff: RuleSetDiff) -> str:
    """The parameters, rules and value sets that differ, and the shared files."""
    if diff.empty:
        return "<h2>What differs in the rules</h2><p>Nothing: the two rule sets hold the same rules.</p>"
    parts = ["<h2>What differs in the rules</h2>"]
    if diff.parameters:
        body = []
        for change in diff.parameters:
            old, new = change.before, change.after
            also = [w for w in change.what if not w.startswith(("value:", "unit:"))]
            unit = new.unit if new is not None else old.unit if old is not None else ""
            if old is not None and new is not None and old.unit != new.unit:
                unit = f"{old.unit} → {new.unit}"
            body.append(f"<tr><td>{html.escape(change.name)}</td><td>{_status(change.status)}</td>"
                        f"<td class=n>{cell(old.value if old else None)}</td>"
                        f"<td class=n>{cell(new.value if new else None)}</td><td>{cell(unit)}</td>"
                        f"<td>{_what(also)}</td></tr>")
        parts.append("<h3>Parameters</h3><table><tr><th>parameter</th><th></th><th>before</th><th>after</th>"
                     f"<th>unit</th><th>also</th></tr>{''.join(body)}</table>")
    if diff.rules:
        body = [f"<tr><td>{html.escape(c.rule_id)}</td><td>{_status(c.status)}</td>"
                f"<td>{cell(c.version_before)}</td><td>{cell(c.version_after)}</td><td>{_what(list(c.what))}</td>"
                f"</tr>" for c in diff.rules]
        parts.append("<h3>Rules</h3><table><tr><th>rule</th><th></th><th>version before</th><th>version after</th>"
                     f"<th>what changed</th></tr>{''.join(body)}</table>")
    if diff.value_sets:
        body = [f"<tr><td>{html.escape(c.value_set)}</td><td>{_status(c.status)}</td><td>{_what(list(c.what))}</td>"
                f"</tr>" for c in diff.value_sets]
        parts.append("<h3>Value sets</h3><table><tr><th>value set</th><th></th><th>what changed</th></tr>"
                     f"{''.join(body)}</table>")
    if diff.files:
        parts.append(f"<p>Also changed: {html.escape(', '.join(diff.files))}.</p>")
    return "".join(parts)


def _status(status: str) -> str:
    return f"<span class={status}>{html.escape(status)}</span>"


def _what(items: list[str]) -> str:
    return "<ul class=what>" + "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul>" if items else "—"


def _examples(impact: Impact) -> str:
    if impact.examples is None:
        return ""
    changed = [e for e in impact.examples if e.changed]
    head = f"<h2>Examples ({len(impact.examples)} compared, {len(changed)} changed)</h2>"
    if not changed:
        return head + "<p>None changed: every example gets the same cards and red flags.</p>"
    body = "".join(f"<tr><td>{html.escape(e.name)}</td><td>{codes_html(e.before)}</td>"
                   f"<td>{codes_html(e.after)}</td><td>{cell(e.flags_before)}</td><td>{cell(e.flags_after)}</td>"
                   f"</tr>" for e in changed)
    return (head + "<p class=meta>Each example request of the repository answered as of its own now by the hook's "
            "call path; unchanged ones are in examples.csv.</p><table><tr><th>example</th><th>before</th>"
            f"<th>after</th><th>red flags before</th><th>red flags after</th></tr>{body}</table>")


def _problems(impact: Impact) -> str:
    problems, not_listed = impact.problems, impact.not_listed
    if not problems and not not_listed:
        return "<h2>Problems in the export</h2><p>None.</p>"
    kinds = Counter(p.kind for p in problems)
    body = "".join(f"<tr><td>{html.escape(p.kind)}</td><td>{html.escape(p.file)}:{p.line}</td>"
                   f"<td>{html.escape(p.message)}</td></tr>" for p in problems[:PROBLEMS_SHOWN])
    more = ". ".join(([f"The first {PROBLEMS_SHOWN}; all {len(problems)} listed are in problems.csv"]
                      if len(problems) > PROBLEMS_SHOWN else [])
                     + ([not_listed_text(not_listed).capitalize()] if not_listed else []))
    return (f"<h2>Problems in the export ({len(problems) + not_listed}: "
            + html.escape(", ".join(f"{k} {n}" for k, n in sorted(kinds.items()))) + ")</h2>"
            + f'<table class="problems"><tr><th>kind</th><th>where</th><th>what</th></tr>{body}</table>'
            + (f"<p class=meta>{html.escape(more)}.</p>" if more else ""))
