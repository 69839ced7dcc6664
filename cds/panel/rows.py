"""One patient of the export through the pacing-review hook's own code path: the worklist row of it, and the impact
row of it under two rule sets (its lines parsed once, evaluated under each)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import msgspec
import orjson

from cds.engine import Evaluation, RuleEngine
from cds.fhir import typed
from cds.panel.source import Problem
from cds.services.pipeline import Outcome, evaluate_patient
from cds.services.proposed import first_proposed

SERVICE, HOOK = "pacing-review", "patient-view"
COLUMNS = ("patient", "recommendations", "dose_now", "dose_proposed", "adherence", "pain_delta", "flare_weeks",
           "last_data_day", "red_flags", "measure", "rule_set_version", "note")
# impact.csv: the worklist's recommendations, proposed dose and red flags, and the dose recommendation (the code of
# the dose finding), before and after a rule change.
IMPACT_COLUMNS = ("patient", "before", "after", "dose_before", "dose_after", "recommendation_before",
                  "recommendation_after", "red_flags_before", "red_flags_after", "changed")
RED_FLAG = "red-flag"  # the recommendation whose findings name the red flags


def row_of(patient_id: str, outcome: Outcome) -> dict[str, Any]:
    """The worklist row: recommendations as the hook's cards name them, numbers from the features, red-flag
    reasons from the findings. The one place that knows the attribute names of Features."""
    f, evaluation = outcome.features, outcome.evaluation
    if not f.has_prescription:  # no plan in force: a starting quota is a proposal, not the dose now
        dose_now = None
    elif f.measure == "steps":
        dose_now = f"{round(f.quota):,} steps/day" if f.quota else None
    else:
        dose_now = f.plan.words() if f.plan else None
    gaps = [d for d in (f.days_since_activity, f.days_since_pain) if d is not None]
    last_day = (f.now.date() - timedelta(days=min(gaps))).isoformat() if gaps else None
    return {
        "patient": f"Patient/{patient_id}",
        "recommendations": " ".join(c.source.topic.code for c in outcome.response.cards if c.source.topic),
        "dose_now": dose_now,
        "dose_proposed": first_proposed(outcome.response.cards),
        "adherence": round(f.adherence, 3) if f.adherence is not None else None,
        "pain_delta": round(f.pain_delta, 2) if f.pain_delta is not None else None,
        "flare_weeks": f.flare_weeks,
        "last_data_day": last_day,
        "red_flags": red_flags(evaluation),
        "measure": f.measure,
        "rule_set_version": evaluation.version,
        # Why there is no card; else the data a card names as not read.
        "note": outcome.silence or ("could not be read: " + ", ".join(f.unread_needed) if f.unread_needed else None),
    }


def red_flags(evaluation: Evaluation) -> str:
    """The red flags of an evaluation, each once, by space: the value set of each condition a red-flag finding
    matched, else the rest of its rule id (a red flag of vitals)."""
    flags: list[str] = []
    for finding in (f for f in evaluation.findings if f.code == RED_FLAG):
        conditions = [fact["value_set"] for fact in finding.facts.values() if fact.get("t") == "condition"]
        flags.extend(conditions or [finding.rule_id.removeprefix(f"{RED_FLAG}-")])
    return " ".join(dict.fromkeys(flags))


def dose_recommendation(evaluation: Evaluation) -> str:
    """The code of the dose finding (the one dose recommendation precedence kept), or empty."""
    return next((f.code for f in evaluation.findings if f.kind == "dose"), "")


def impact_row(patient_id: str, before: Outcome, after: Outcome) -> dict[str, Any]:
    """A patient's row of impact.csv: its worklist recommendations, proposed dose, dose recommendation and red flags
    under the rules before and after a change, and whether any of them differ."""
    was, now = row_of(patient_id, before), row_of(patient_id, after)
    row: dict[str, Any] = {
        "patient": was["patient"], "before": was["recommendations"], "after": now["recommendations"],
        "dose_before": was["dose_proposed"], "dose_after": now["dose_proposed"],
        "recommendation_before": dose_recommendation(before.evaluation),
        "recommendation_after": dose_recommendation(after.evaluation),
        "red_flags_before": was["red_flags"], "red_flags_after": now["red_flags"]}
    row["changed"] = any(row[f"{prefix}before"] != row[f"{prefix}after"]
                         for prefix in ("", "dose_", "recommendation_", "red_flags_"))
    return row


def hook_instance(patient_id: str) -> str:
    """A stable hookInstance per patient, so that the same export gives the same cards."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"pacing-cds-worklist:{patient_id}"))


@dataclass(frozen=True)
class Parsed:
    """A patient's lines read into resources, ready to be evaluated under any rule set: an Observation decoded typed
    keeps its line, for the general reader."""

    patient_id: str
    resources: list[Any]
    texts: dict[int, str]  # id() of a typed Observation -> its line

    def plain(self, typed_observation: Any) -> dict[str, Any]:
        """A typed Observation read again from its line as a dict."""
        return orjson.loads(self.texts[id(typed_observation)])


def parse_group(patient_id: str, items: Iterable[tuple[str, int, str]]) -> tuple[Parsed | None, list[Problem]]:
    """A patient's lines (file, line, NDJSON text) -> its resources, or None with a problem for each line when the
    export has no Patient resource of that id.

    An Observation line is decoded typed (only the elements the one-pass reader reads, as a hook's Observation
    searches are), anything else as a dict; an Observation the one-pass reader leaves to the general reader is
    read from its line as a dict, so every reading, reason and message is the general path's."""
    resources: list[Any] = []
    texts: dict[int, str] = {}
    places: list[tuple[str, int]] = []
    has_patient = False
    for file, line, text in items:
        resource = _resource(text)
        if type(resource) is dict:
            has_patient = has_patient or resource.get("resourceType") == "Patient"
        else:
            texts[id(resource)] = text
        resources.append(resource)
        places.append((file, line))
    if not has_patient:
        return None, [Problem("unknown-patient", file, line,
                              f"refers to Patient/{patient_id}, which is not in the export") for file, line in places]
    return Parsed(patient_id, resources, texts), []


def evaluate_parsed(engine: RuleEngine, parsed: Parsed, now: datetime, unread: tuple[str, ...] = ()) -> Outcome:
    """A patient's resources through the hook's clinical core under `engine`'s rules. `unread`: resource types whose
    files could not be read, which the evaluation names as not read (as a hook names a prefetch key whose request
    failed); a type the export has no file for is none recorded, not unread."""
    return evaluate_patient(engine, SERVICE, HOOK, hook_instance(parsed.patient_id), parsed.patient_id,
                            parsed.resources, now, unread=unread, plain=parsed.plain)


def evaluate_group(engine: RuleEngine, patient_id: str, items: Iterable[tuple[str, int, str]], now: datetime,
                   unread: tuple[str, ...] = ()) -> tuple[dict[str, Any] | None, list[Problem]]:
    """A patient's lines (file, line, NDJSON text) -> its worklist row, or None with a problem for each line
    when the export has no Patient resource of that id (parse_group, then evaluate_parsed)."""
    parsed, problems = parse_group(patient_id, items)
    if parsed is None:
        return None, problems
    return row_of(patient_id, evaluate_parsed(engine, parsed, now, unread)), []


_OBSERVATION = msgspec.json.Decoder(typed.Observation)


def _resource(text: str) -> Any:
    """An Observation typed when each element read has its JSON type and it lists no members (a panel is read as
    a dict); anything else as a dict."""
    try:
        observation = _OBSERVATION.decode(text)
    except typed.NOT_TYPED:
        return orjson.loads(text)
    return observation if observation.hasMember is msgspec.UNSET else orjson.loads(text)
