"""A worklist row, by the per-patient code the Dask tasks run: it says why a patient has no card, and a type the
export has no file for is none recorded, never "could not be read"."""

from __future__ import annotations

from typing import Any

import orjson

from cds.engine import RuleEngine
from cds.panel.rows import evaluate_group
from tests.support.data import NOW
from tests.support.examples import example


def lines(resources: list[dict[str, Any]]) -> list[tuple[str, int, str]]:
    return [("export.ndjson", n, orjson.dumps(r).decode()) for n, r in enumerate(resources, start=1)]


def export_of(name: str, without: tuple[str, ...] = ()) -> tuple[str, list[dict[str, Any]]]:
    """An example's data as the lines of an export, leaving out the prefetch keys named."""
    body, _ = example(name)
    resources = []
    for key, value in body["prefetch"].items():
        if key in without:
            continue
        resources += [e["resource"] for e in value.get("entry") or []] if value["resourceType"] == "Bundle" \
            else [value]
    return body["context"]["patientId"], resources


def test_a_row_without_a_card_says_why(engine: RuleEngine) -> None:
    pid, resources = export_of("progress-walking")
    for resource in resources:
        if resource["resourceType"] == "Patient":
            resource["birthDate"] = "2014-06-01"
    row, problems = evaluate_group(engine, pid, lines(resources), NOW)
    assert row is not None and not problems
    assert row["recommendations"] == "" and "younger than 18 years: out of scope" in row["note"]


def test_an_export_without_goals_is_none_recorded_not_unread(engine: RuleEngine) -> None:
    """A steps patient with no Goal in the export (no Goal file at all): none recorded, so a start from the
    baseline, not a hold for goals that "could not be read"."""
    pid, resources = export_of("start-steps", without=("step-goals",))
    row, _ = evaluate_group(engine, pid, lines(resources), NOW)
    assert row is not None and row["recommendations"] == "start" and row["dose_proposed"] == "4,800 steps/day"
    assert row["note"] is None and row["dose_now"] is None, "no plan in force: the starting quota is a proposal"
    unread, _ = evaluate_group(engine, pid, lines(resources), NOW, unread=("Goal",))
    assert unread is not None and unread["recommendations"] == "hold"
    assert unread["note"] == "could not be read: Goal"
