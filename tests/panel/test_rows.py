"""A worklist row, by the per-patient code the Dask tasks run: it says why a patient has no card, and a type the
export has no file for is none recorded, never "could not be read"."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.export import patient
from cds.engine import RuleEngine
from cds.panel import rows
from cds.panel.rows import evaluate_group
from cds.services.pipeline import evaluate_patient
from tests.support.data import NOW
from tests.support.examples import BY_NAME, example
from tests.support.rules import VALUES


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
    assert row["recommendations"] == "" and f"younger than {VALUES['adult_min_age']:g} years: out of scope" in row["note"]


def test_an_export_without_goals_is_none_recorded_not_unread(engine: RuleEngine) -> None:
    """A steps patient with no Goal in the export (no Goal file at all): none recorded, so a start from the
    baseline, not a hold for goals that "could not be read"."""
    pid, resources = export_of("start-steps", without=("step-goals",))
    row, _ = evaluate_group(engine, pid, lines(resources), NOW)
    assert row is not None and row["recommendations"] == "start" and row["dose_proposed"] == BY_NAME["start-steps"].expected["dose"]
    assert row["note"] is None and row["dose_now"] is None, "no plan in force: the starting quota is a proposal"
    unread, _ = evaluate_group(engine, pid, lines(resources), NOW, unread=("Goal",))
    assert unread is not None and unread["recommendations"] == "hold"
    assert unread["note"] == "could not be read: Goal"


MUTATIONS = (
    ("value as text", lambda o: o.get("valueQuantity", {}).update(value=str(o["valueQuantity"]["value"]))
     if "valueQuantity" in o else None),
    ("unknown unit", lambda o: o.get("valueQuantity", {}).update(code="furlongs", unit="furlongs")
     if "valueQuantity" in o else None),
    ("preliminary", lambda o: o.update(status="preliminary")),
    ("no date", lambda o: o.pop("effectiveDateTime", None)),
    ("a period", lambda o: o.update(effectivePeriod={"start": o.pop("effectiveDateTime", "2026-11-01")})),
    ("in the future", lambda o: o.update(effectiveDateTime="2027-01-01T10:00:00Z")),
    ("a local time", lambda o: o.update(effectiveDateTime=str(o.get("effectiveDateTime", ""))[:19])),
    ("two codings", lambda o: o.get("code", {}).get("coding", []).append({"system": "http://loinc.org",
                                                                          "code": "8867-4"})),
    ("a member list", lambda o: o.update(hasMember=[{"reference": "Observation/elsewhere"}])),
    ("the subject as text", lambda o: o.update(subject="Patient/x")),
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(0, 10_000), st.lists(st.tuples(st.integers(0, 10_000), st.sampled_from(MUTATIONS)), max_size=6))
def test_typed_lines_read_as_the_general_path_reads_them(engine: RuleEngine, index: int,
                                                         changes: list[tuple[int, Any]]) -> None:
    """The worklist decodes Observation lines typed and hands the one-pass reader's refusals to the general reader:
    the cards, the readings set aside and the duplicates are those of every line read as a dict, whatever the
    patient (the generated archetypes) and whatever is wrong with some of its Observations."""
    pid, resources = patient(index, 3, NOW, 40)
    observations = [r for r in resources if r["resourceType"] == "Observation"]
    for at, (_, change) in changes:
        change(observations[at % len(observations)])
    texts = [orjson.dumps(r).decode() for r in resources]
    mixed = {}
    typed_resources = []
    for text in texts:
        resource = rows._resource(text)
        if type(resource) is not dict:
            mixed[id(resource)] = text
        typed_resources.append(resource)
    args = (engine, rows.SERVICE, rows.HOOK, "h", pid)
    read_typed = evaluate_patient(*args, typed_resources, NOW, plain=lambda o: orjson.loads(mixed[id(o)]))
    read_plain = evaluate_patient(*args, [orjson.loads(text) for text in texts], NOW)
    assert read_typed.response.model_dump() == read_plain.response.model_dump()
    assert read_typed.record.set_aside == read_plain.record.set_aside
    assert read_typed.record.duplicates == read_plain.record.duplicates
    assert read_typed.silence == read_plain.silence


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(0, 10_000))
def test_conditions_that_could_not_be_read_are_said_never_silent(engine: RuleEngine, index: int) -> None:
    """A Condition file lost or cut short: no chronic-pain condition found means nothing, so no adult's row falls
    silent as "not a patient the pacing rules are for"; each says the conditions could not be read (and so red flags
    could not be checked) and changes no dose."""
    pid, resources = patient(index, 5, NOW, 40)
    left = [r for r in resources if r["resourceType"] != "Condition"]
    row, _ = evaluate_group(engine, pid, lines(left), NOW, unread=("Condition",))
    assert row is not None and row["note"] is not None
    assert "not a patient the pacing rules are for" not in row["note"], row
    assert "Condition" in row["note"] and row["recommendations"], row  # a card: data-quality, or a precaution first
    assert not {"progress", "start", "re-baseline"} & set(row["recommendations"].split()), "no dose is raised"


def test_a_child_is_out_of_scope_whether_or_not_its_conditions_were_read(engine: RuleEngine) -> None:
    pid, resources = export_of("progress-walking")
    for resource in resources:
        if resource["resourceType"] == "Patient":
            resource["birthDate"] = "2014-06-01"
    row, _ = evaluate_group(engine, pid, lines([r for r in resources if r["resourceType"] != "Condition"]), NOW,
                            unread=("Condition",))
    assert row is not None and row["recommendations"] == "" and f"younger than {VALUES['adult_min_age']:g} years" in row["note"]
