"""One patient of the export through the pacing-review hook's own code path, and the worklist row of it."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import msgspec
import orjson

from cds.charts.series import first_proposed
from cds.engine import RuleEngine
from cds.fhir import typed
from cds.panel.source import Problem
from cds.services.pipeline import Outcome, evaluate_patient

SERVICE, HOOK = "pacing-review", "patient-view"
COLUMNS = ("patient", "recommendations", "dose_now", "dose_proposed", "adherence", "pain_delta", "flare_weeks",
           "last_data_day", "red_flags", "measure", "rule_set_version", "note")


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
    flags: list[str] = []
    for finding in (f for f in evaluation.findings if f.code == "red-flag"):
        conditions = [fact["value_set"] for fact in finding.facts.values() if fact.get("t") == "condition"]
        flags.extend(conditions or [finding.rule_id.removeprefix("red-flag-")])
    return {
        "patient": f"Patient/{patient_id}",
        "recommendations": " ".join(c.source.topic.code for c in outcome.response.cards if c.source.topic),
        "dose_now": dose_now,
        "dose_proposed": first_proposed(outcome.response.cards),
        "adherence": round(f.adherence, 3) if f.adherence is not None else None,
        "pain_delta": round(f.pain_delta, 2) if f.pain_delta is not None else None,
        "flare_weeks": f.flare_weeks,
        "last_data_day": last_day,
        "red_flags": " ".join(dict.fromkeys(flags)),
        "measure": f.measure,
        "rule_set_version": evaluation.version,
        # Why there is no card; else the data a card names as not read.
        "note": outcome.silence or ("could not be read: " + ", ".join(f.unread_needed) if f.unread_needed else None),
    }


def hook_instance(patient_id: str) -> str:
    """A stable hookInstance per patient, so that the same export gives the same cards."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"pacing-cds-worklist:{patient_id}"))


def evaluate_group(engine: RuleEngine, patient_id: str, items: Iterable[tuple[str, int, str]], now: datetime,
                   unread: tuple[str, ...] = ()) -> tuple[dict[str, Any] | None, list[Problem]]:
    """A patient's lines (file, line, NDJSON text) -> its worklist row, or None with a problem for each line
    when the export has no Patient resource of that id. `unread`: resource types whose files could not be read,
    which the evaluation names as not read (as a hook names a prefetch key whose request failed); a type the export
    has no file for is none recorded, not unread.

    An Observation line is decoded typed (only the elements the one-pass reader reads, as a hook's Observation
    searches are), anything else as a dict; an Observation the one-pass reader leaves to the general reader is
    read from its line as a dict, so every reading, reason and message is the general path's."""
    resources: list[Any] = []
    texts: dict[int, str] = {}  # id() of a typed Observation -> its line, for the general reader
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
    outcome = evaluate_patient(engine, SERVICE, HOOK, hook_instance(patient_id), patient_id, resources, now,
                               unread=unread, plain=lambda typed_obs: orjson.loads(texts[id(typed_obs)]))
    return row_of(patient_id, outcome), []


_OBSERVATION = msgspec.json.Decoder(typed.Observation)


def _resource(text: str) -> Any:
    """An Observation typed when each element read has its JSON type and it lists no members (a panel is read as
    a dict); anything else as a dict."""
    try:
        observation = _OBSERVATION.decode(text)
    except typed.NOT_TYPED:
        return orjson.loads(text)
    return observation if observation.hasMember is msgspec.UNSET else orjson.loads(text)
