"""GET /rules: the rule set as a page for clinicians and governance, rendered from rules/ (no patient data, so it is
open like /healthz). Cards link to a rule's anchor here (source.url)."""

from __future__ import annotations

from html import escape

from flask import Blueprint, Response

from cds.knowledge import CompiledRule, Knowledge
from cds.knowledge.schema import ValueSet
from cds.runtime import runtime

bp = Blueprint("rules_page", __name__)

STYLE = """body{font:15px/1.45 system-ui,sans-serif;max-width:60rem;margin:1.5rem auto;padding:0 1rem;color:#1a1a1a}
table{border-collapse:collapse;width:100%;margin:.5rem 0 1rem}th,td{border:1px solid #bbb;padding:.25rem .4rem;
text-align:left;vertical-align:top}th{background:#eee}h2{border-bottom:2px solid #333;margin-top:2rem}
.rule{border-left:4px solid #0072b2;padding-left:.8rem;margin:1rem 0}.derived{color:#a04000}code{font-size:90%}"""


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _parameters(names: list[str], knowledge: Knowledge) -> str:
    rows = []
    for name in names:
        p = knowledge.parameters[name]
        derived = '<span class="derived">derived</span>' if p.derived else "cited"
        rows.append(f"<tr><td id=\"param-{_e(name)}\"><code>{_e(name)}</code></td><td>{_e(p.value)} {_e(p.unit)}</td>"
                    f"<td>{_e(p.range[0])} to {_e(p.range[1])}</td><td>{_e(p.description)}</td>"
                    f"<td>{_e(p.source)}</td><td>{derived}</td></tr>")
    head = ("<tr><th>Parameter</th><th>Value</th><th>Range</th><th>Meaning</th><th>Source</th>"
            "<th>Derived or cited</th></tr>")
    return f"<table>{head}{''.join(rows)}</table>" if rows else ""


def _rule(compiled: CompiledRule, knowledge: Knowledge) -> str:
    rule = compiled.rule
    evidence = "; ".join(_e(c) for c in rule.evidence.citations)
    derived = (f'<p class="derived">Derived: {_e(rule.evidence.note or "rests on a derived threshold")}</p>'
               if rule.evidence.derived else "")
    return (f'<section class="rule" id="{_e(rule.id)}"><h3>{_e(rule.title)} <small><code>{_e(rule.id)}</code> '
            f"v{_e(rule.version)}</small></h3>"
            + ('<p class="derived"><b>Silent (in pilot)</b>: evaluated and audited, its card never returned</p>'
               if rule.mode == "silent" else "")
            + f"<p><b>When</b> {_e(rule.plain.when)}<br><b>Then</b> {_e(rule.plain.then)}</p>"
            f"<p>Card: {_e(rule.conclude.indicator)}; {_e(rule.kind)} recommendation, precedence "
            f"{_e(rule.precedence)}; services {_e(', '.join(compiled.services))}</p>"
            f"<p>Evidence: {evidence}</p>{derived}{_parameters(sorted(compiled.parameters), knowledge)}</section>")


def _note(vs: ValueSet, knowledge: Knowledge) -> str:
    """The data line a value set puts on cards, and which cards leave it out."""
    if vs.note is None:
        return ""
    after = knowledge.parameters[vs.note_after] if vs.note_after else None
    when = (f" when recorded more than {_e(f'{after.value:g}')} {_e(after.unit)} ago "
            f"(<a href=\"#param-{_e(vs.note_after)}\">{_e(vs.note_after)}</a>)" if vs.note_after and after else "")
    unless = f"; not on {_e(', '.join(vs.note_not_with))} cards" if vs.note_not_with else ""
    return f"<br>Card line{when}{unless}: <q>{_e(vs.note)}</q>"


POLICY = {"current": "counts while current; over (history) as the status table says",
          "any": "counts whatever its clinical status, remission and inactive included",
          "until-abated": "over only when its status says so and an abatement date is recorded"}
MEANINGS = ("current", "history", "unconfirmed", "ignored")


def _statuses(knowledge: Knowledge) -> str:
    """rules/statuses.yaml as a table: per status element, its codes by meaning, and what absence means."""
    if knowledge.statuses is None:
        return ""
    rows = []
    for table in knowledge.statuses.tables.values():
        cells = "".join(f"<td>{_e(', '.join(code for code, m in table.codes.items() if m == meaning))}</td>"
                        for meaning in MEANINGS)
        rows.append(f"<tr><td><code>{_e(table.element)}</code></td>{cells}<td>{_e(table.absent)}</td></tr>")
    head = "".join(f"<th>{_e(m.capitalize())}</th>" for m in MEANINGS)
    return (f"<h2 id=\"statuses\">What each FHIR status means</h2><p>A code not listed here is set aside and "
            f"reported on the card.</p><table><tr><th>Element</th>{head}<th>Absent</th></tr>{''.join(rows)}</table>")


def render(knowledge: Knowledge) -> str:
    """The whole page: each recommendation with its rules, then every parameter and code list."""
    info = knowledge.info
    by_code: dict[str, list[CompiledRule]] = {}
    for compiled in knowledge.rules:
        by_code.setdefault(compiled.rule.conclude.code, []).append(compiled)
    toc = " · ".join(f'<a href="#{_e(c[0].rule.id)}">{_e(code)}</a>' for code, c in by_code.items())
    sections = "".join(f'<h2 id="code-{_e(code)}">{_e(code)}</h2>' + "".join(_rule(c, knowledge) for c in rules)
                       for code, rules in by_code.items())
    codes = knowledge.codes
    lists = "".join(f"<tr><td>{_e(name)}</td><td>{_e(', '.join(items))}</td></tr>"
                    for name, items in codes.observations.items())
    sets = "".join(
        f"<tr id=\"value-set-{_e(vs.id)}\"><td><code>{_e(vs.id)}</code><br>{_e(vs.title)}</td><td>{_e(vs.purpose)}"
        f"{_note(vs, knowledge)}<br>Clinical status: {_e(POLICY[vs.clinical_status])}</td>"
        f"<td>{_e(vs.source.name)}{'<br>' + _e(vs.source.reference) if vs.source.reference else ''}"
        f"{' (' + _e(vs.source.version) + ')' if vs.source.version else ''}</td>"
        f"<td>{len(vs.snomed)} SNOMED CT, {len(vs.icd10cm)} ICD-10-CM prefixes</td></tr>"
        for vs in knowledge.value_sets.values())
    return (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{_e(info.name)} "
            f"{_e(knowledge.version)}</title><meta name=\"viewport\" content=\"width=device-width\">"
            f"<style>{STYLE}</style></head><body><main>"
            f"<h1>{_e(info.name)} <small>{_e(knowledge.version)}</small></h1>"
            f"<p>Every recommendation the service makes, the rules that make it, and the thresholds they use. A "
            f"threshold marked <span class=\"derived\">derived</span> is our synthesis of the cited sources, not a "
            f"guideline figure.</p><p>{toc}</p>{sections}"
            f"<h2 id=\"parameters\">All parameters</h2>{_parameters(sorted(knowledge.parameters), knowledge)}"
            f"<h2 id=\"value-sets\">Value sets (red flags and conditions that change the plan)</h2><table><tr>"
            f"<th>Value set</th><th>What a match means</th><th>Source</th><th>Codes</th></tr>{sets}</table>"
            f"{_statuses(knowledge)}"
            f"<h2 id=\"codes\">Observation codes (LOINC)</h2><table><tr><th>List</th><th>Codes</th></tr>{lists}"
            f"</table></main></body></html>")


@bp.get("/rules")
def rules_page() -> Response:
    page = render(runtime().engine.knowledge)
    return Response(page, mimetype="text/html", headers={
        "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'", "Cache-Control": "no-cache"})
