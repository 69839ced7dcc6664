"""The worklist's files (parquet, CSV, a self-contained HTML page, the problems) and its terminal summary.

The files hold patient data: each is created readable by its owner only (0600, from the moment it exists) and put
in place of the file of an earlier run only once written whole. The summary prints text from the export (file
names, patient references), with its control characters escaped so that none reaches the terminal.
"""

from __future__ import annotations

import csv
import html
import os
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import pandas as pd

from cds.logs import escape_controls
from cds.panel.rows import COLUMNS
from cds.panel.source import NOT_LISTED, Problem

PROBLEMS_SHOWN = 10


def action_rank(row: dict[str, Any], needs_action: list[str]) -> int | None:
    """How urgently the row needs a clinician: the place of its first code in the rule set's needs_action."""
    codes = row["recommendations"].split()
    return next((i for i, code in enumerate(needs_action) if code in codes), None)


def recommendation_counts(rows: list[dict[str, Any]]) -> Counter[str]:
    """Patients per recommendation code (a patient with two codes counts in both); "none" for no card."""
    counts: Counter[str] = Counter()
    for row in rows:
        counts.update(row["recommendations"].split() or ["none"])
    return counts


def frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    data = pd.DataFrame(rows, columns=list(COLUMNS))
    data["flare_weeks"] = data["flare_weeks"].astype("Int64")
    for name in ("adherence", "pain_delta"):
        data[name] = data[name].astype("Float64")
    return data


@contextmanager
def private_file(path: Path, binary: bool = False) -> Iterator[IO[Any]]:
    """A new file beside `path`, created 0600 (mkstemp), renamed over `path` once written whole: an earlier run's
    file keeps neither its mode nor its content, and a symbolic link at `path` is replaced, not followed."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    placed = False
    try:
        with (os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", newline="", encoding="utf-8")) as handle:
            yield handle
        os.replace(temporary, path)
        placed = True
    finally:
        if not placed:
            with suppress(FileNotFoundError):
                os.unlink(temporary)


def write_outputs(out: Path, rows: list[dict[str, Any]], problems: list[Problem], meta: dict[str, Any]) -> list[Path]:
    """worklist.parquet, worklist.csv, worklist.html and problems.csv in `out` (a new folder is 0700), each
    readable by its owner only; problems.csv ends with a count of the problems not listed, if any."""
    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    data = frame(rows)
    with private_file(out / "worklist.parquet", binary=True) as handle:
        data.to_parquet(handle, index=False)
    with private_file(out / "worklist.csv") as handle:
        data.to_csv(handle, index=False)
    with private_file(out / "worklist.html") as handle:
        handle.write(page(rows, problems, meta))
    with private_file(out / "problems.csv") as handle:
        writer = csv.writer(handle)
        writer.writerow(("kind", "file", "line", "message"))
        writer.writerows((p.kind, p.file, p.line, p.message) for p in problems)
        if meta.get("not_listed"):
            writer.writerow((NOT_LISTED, "", "", not_listed_text(meta["not_listed"])))
    return [out / n for n in ("worklist.parquet", "worklist.csv", "worklist.html", "problems.csv")]


def not_listed_text(count: int) -> str:
    """The words that end a capped list of problems, in problems.csv, the page and the summary alike."""
    return f"{count} more problems not listed"


STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#1d2330;background:#fff}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px} .meta{color:#5b6475}
table{border-collapse:collapse} th,td{padding:4px 10px;border-bottom:1px solid #e3e6ec;text-align:left}
th{background:#f4f6f9;font-weight:600} td.n{text-align:right;font-variant-numeric:tabular-nums}
.bar{display:inline-block;height:12px;background:#4a78c2;border-radius:2px;vertical-align:middle}
.code{display:inline-block;padding:1px 7px;border-radius:9px;background:#e8edf5;margin-right:4px;font-size:12px}
.red-flag{background:#f9d4d4;color:#8a1111;font-weight:600} .step-back{background:#fde3c8;color:#7a3d00}
.re-baseline{background:#fbefc0;color:#5e4b00} .data-gap{background:#e3e3e3;color:#333}
.progress,.start{background:#d6efd9;color:#145c20} .problems td{font-family:ui-monospace,monospace;font-size:12px}
.vh{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}
"""


def codes_html(codes: str) -> str:
    return "".join(f'<span class="code {html.escape(c)}">{html.escape(c)}</span>' for c in codes.split()) or "—"


def cell(value: Any) -> str:
    return "—" if value is None or value == "" else html.escape(str(value))


def _table(rows: list[dict[str, Any]]) -> str:
    head = ("patient", "recommendations", "dose now", "proposed", "adherence", "pain Δ", "flare weeks",
            "last data", "red flags", "note")
    body = []
    for r in rows:
        body.append(
            f"<tr><td>{cell(r['patient'])}</td><td>{codes_html(r['recommendations'])}</td>"
            f"<td>{cell(r['dose_now'])}</td><td>{cell(r['dose_proposed'])}</td>"
            f"<td class=n>{cell(r['adherence'])}</td><td class=n>{cell(r['pain_delta'])}</td>"
            f"<td class=n>{cell(r['flare_weeks'])}</td><td>{cell(r['last_data_day'])}</td>"
            f"<td>{cell(r['red_flags'])}</td><td>{cell(r.get('note'))}</td></tr>")
    return "<table><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>" + "".join(body) + "</table>"


def page(rows: list[dict[str, Any]], problems: list[Problem], meta: dict[str, Any]) -> str:
    """One HTML file with its style inline and no link, script or image from anywhere."""
    counts = recommendation_counts(rows)
    top = max(counts.values(), default=1)
    count_rows = "".join(
        f"<tr><td>{codes_html(code)}</td><td class=n>{n}</td>"
        f'<td><span class="bar" style="width:{max(2, round(240 * n / top))}px"></span></td></tr>'
        for code, n in counts.most_common())
    order = meta["needs_action"]
    ranked = {r["patient"]: action_rank(r, order) for r in rows}
    action = sorted((r for r in rows if ranked[r["patient"]] is not None),
                    key=lambda r: (ranked[r["patient"]], r["patient"]))
    rest = [r for r in rows if ranked[r["patient"]] is None]
    kinds = Counter(p.kind for p in problems)
    not_listed = meta.get("not_listed", 0)
    if not_listed:
        kinds[NOT_LISTED] = not_listed
    problem_rows = "".join(f"<tr><td>{html.escape(p.kind)}</td><td>{html.escape(p.file)}:{p.line}</td>"
                           f"<td>{html.escape(p.message)}</td></tr>" for p in problems[:200])
    more = ". ".join(([f"The first 200; all {len(problems)} listed are in problems.csv"] if len(problems) > 200 else [])
                     + ([not_listed_text(not_listed).capitalize()] if not_listed else []))
    problem_part = (f"<h2>Problems in the export ({len(problems) + not_listed}: "
                    + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())) + ")</h2>"
                    + f'<table class="problems"><tr><th>kind</th><th>where</th><th>what</th></tr>{problem_rows}</table>'
                    + (f"<p class=meta>{html.escape(more)}.</p>" if more else "")
                    if problems or not_listed else "<h2>Problems in the export</h2><p>None.</p>")
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in meta.get("notes", []))
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        "<meta name=viewport content='width=device-width,initial-scale=1'>"
        f"<title>Pacing worklist {html.escape(meta['now'][:10])}</title><style>{STYLE}</style></head><body><main>"
        f"<h1>Pacing worklist</h1><p class=meta>{len(rows)} patients as of {html.escape(meta['now'])} · "
        f"rule set {html.escape(meta['version'])} · export {html.escape(meta['export'])} · "
        f"generated {html.escape(meta['generated'])}</p>"
        + (f"<ul class=meta>{notes}</ul>" if notes else "")
        + "<h2>Recommendations</h2><table><tr><th>code</th><th>patients</th>"
        + f"<th><span class=vh>patients as a bar</span></th></tr>{count_rows}</table>"
        + f"<h2>Needs action first ({len(action)})</h2><p class=meta>"
        + html.escape(", then ".join(code.replace("-", " ") for code in order)) + ".</p>" + _table(action)
        + f"<h2>Everyone else ({len(rest)})</h2>" + _table(rest)
        + problem_part + "</main></body></html>\n")


def summary(console: Any, rows: list[dict[str, Any]], problems: list[Problem], meta: dict[str, Any],
            files: list[Path]) -> None:
    """The table printed at the end of a run."""
    from rich.table import Table
    from rich.text import Text

    say = lambda text: console.print(escape_controls(text), markup=False, highlight=False, soft_wrap=True)
    not_listed = meta.get("not_listed", 0)
    say(f"Pacing worklist: {len(rows)} patients as of {meta['now']} (rule set {meta['version']})")
    table = Table()
    table.add_column("recommendation")
    table.add_column("patients", justify="right")
    for code, n in recommendation_counts(rows).most_common():
        table.add_row(Text(escape_controls(code)), str(n))
    table.add_section()
    table.add_row("needs action first",
                  str(sum(1 for r in rows if action_rank(r, meta["needs_action"]) is not None)))
    table.add_row("problems in the export", str(len(problems) + not_listed))
    console.print(table)
    for note in meta.get("notes", []):
        say(f"note: {note}")
    for p in problems[:PROBLEMS_SHOWN]:
        say(f"problem: {p.file}:{p.line}: {p.kind}: {p.message}")
    if len(problems) > PROBLEMS_SHOWN:
        say(f"... {len(problems) - PROBLEMS_SHOWN} more in problems.csv")
    if not_listed:
        say(f"... and {not_listed_text(not_listed)}")
    say(f"{meta['seconds']:.1f} s on {meta['workers']} workers ({meta['partitions'][0]} read partitions, "
        f"{meta['partitions'][1]} patient buckets); wrote {', '.join(str(f) for f in files)}")


def now_text(now: datetime) -> str:
    return now.isoformat().replace("+00:00", "Z")
