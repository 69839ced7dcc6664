"""The invariants of docs/clinical.md (absent data, one reading once, what no change may do), on cases no one wrote:
hypothesis draws legal variations of every example request (tests/invariants/variations.py) and the answers of the
hook, and the worklist's row for the same data, must keep them.

- A representation-only change (UCUM-equal units, another UTC offset for the same instant, codings reordered or an
  extra local coding, an extension, narrative, meta, entry order, ids), a duplicated Observation, or a status changed
  to another of the same meaning never changes the answer.
- A red flag is never lost but by its condition being refuted, entered in error or over; a precaution only by its
  reading or its condition going too.
- No change makes `progress` appear but removing a reading (or a condition) that stood in its way.
- A legal request is always answered; a patient the rules are for gets exactly one dose recommendation at
  patient-view; an answer without a card says why; the worklist's row names the hook's cards and dose.

`make test` runs a fixed, bounded number of cases per example (30, derandomized, no example database); `make check`,
the inner loop, 10 (PACING_CDS_INVARIANT_CASES); `make fuzz` (PACING_CDS_FUZZ=1) runs many more,
randomly. A counterexample found becomes an example of rules/ with its
expected answer.
"""

from __future__ import annotations

import json
import os
import re
from datetime import datetime
from functools import cache
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cds.engine import RuleEngine
from cds.fhir.client import FhirClient
from cds.panel.rows import evaluate_group
from cds.services import services_of
from cds.services.pipeline import Outcome, answer
from cds.services.proposed import first_proposed
from tests.invariants.variations import (
    ANY,
    CONDITION_OVER,
    EQUAL,
    EQUAL_KINDS,
    READING_REMOVED,
    Step,
    change_status,
    remove_element,
    single_changes,
    varied,
)
from tests.support.examples import EXAMPLES, Example

FUZZ = os.environ.get("PACING_CDS_FUZZ") == "1"
CASES = (int(os.environ.get("PACING_CDS_FUZZ_CASES", "1500")) if FUZZ
         else int(os.environ.get("PACING_CDS_INVARIANT_CASES", "30")))
PROFILE = settings(max_examples=CASES, derandomize=not FUZZ, database=None if not FUZZ else settings().database,
                   deadline=None, print_blob=True,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                          HealthCheck.function_scoped_fixture])
REFERENCE = re.compile(r"\b(Observation|Condition|ServiceRequest|Goal|CarePlan)/[A-Za-z0-9.\-]+(#activity-\d+)?")
FLAGS = ("red-flag", "precaution")


@cache
def _client() -> FhirClient:
    return FhirClient(3.0, 10)


def answered(example: Example, body: dict[str, Any], engine: RuleEngine) -> Outcome:
    """The hook's answer in-process, by the one call path; a legal request must never be refused."""
    service = services_of(engine.knowledge)[example.expected["service"]]
    now = datetime.fromisoformat(example.expected["now"].replace("Z", "+00:00"))
    return answer(service, body, engine, _client(), now).outcome


def signature(outcome: Outcome) -> Any:
    """The answer as the clinician reads it, with identifiers masked: references (one may follow a renamed id),
    and the uuids of cards, suggestions and drafted resources (an order hook's are made from the draft's id). A
    draft order that an `update` suggestion hands back keeps the draft's own elements: only the dose and the
    instruction it gains are the service's answer."""
    cards = outcome.response.to_json()["cards"]
    for card in cards:
        for suggestion in card.get("suggestions") or []:
            for action in suggestion.get("actions") or []:
                if action.get("type") == "update" and isinstance(action.get("resource"), dict):
                    resource = action["resource"]
                    action["resource"] = {"repeat": (resource.get("occurrenceTiming") or {}).get("repeat"),
                                          "patientInstruction": resource.get("patientInstruction")}
    text = orjson.dumps(cards, option=orjson.OPT_SORT_KEYS).decode()
    return _masked(json.loads(REFERENCE.sub(lambda m: f"{m.group(1)}/<id>", text)))


def _masked(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: "<id>" if k in ("uuid", "id", "resourceId") else _masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v) for v in value]
    return value


# docs/clinical.md: metastatic disease, myeloma and spinal cord compression count whatever their clinical status; a
# fracture or an infection is over only when resolved with an abatement date. Written here from the specification,
# not read from rules/, so that a change to the value sets' clinical_status is caught.
NEVER_OVER = frozenset({"metastasis", "myeloma", "spinal-cord-compression"})
OVER_WHEN_ABATED = frozenset({"vertebral-fracture", "spinal-infection"})


def may_be_over(step: Step, engine: RuleEngine) -> bool:
    """Whether the condition a step changed may stop being a red flag: refuted or entered in error, or over where
    the specification lets it be over."""
    resource = step.resource or {}
    verification = [c.get("code") for c in (resource.get("verificationStatus") or {}).get("coding") or []]
    if {"refuted", "entered-in-error"} & set(verification):
        return True
    coding = (resource.get("code") or {}).get("coding") or []
    snomed = [c["code"] for c in coding if c.get("system") == "http://snomed.info/sct" and "code" in c]
    icd = [c["code"] for c in coding if "icd-10" in str(c.get("system")) and "code" in c]
    abated = any(k.startswith("abatement") for k in resource)
    found = set(engine.knowledge.value_set_index.lookup(snomed, icd))
    return not (found & NEVER_OVER or (found & OVER_WHEN_ABATED and not abated))


def codes(outcome: Outcome) -> list[str]:
    return [c.source.topic.code for c in outcome.response.cards if c.source.topic is not None]


def row_of(example: Example, body: dict[str, Any], engine: RuleEngine) -> dict[str, Any] | None:
    """The worklist's row for the request's data, by the worklist's own per-patient code (one NDJSON line each)."""
    pid = body["context"]["patientId"]
    lines = []
    for value in body["prefetch"].values():
        resources = [e["resource"] for e in value.get("entry") or []] if value.get("resourceType") == "Bundle" \
            else [value]
        lines += [("export.ndjson", len(lines) + 1, orjson.dumps(r).decode()) for r in resources]
    now = datetime.fromisoformat(example.expected["now"].replace("Z", "+00:00"))
    row, _ = evaluate_group(engine, pid, lines, now)
    return row


def worklist_comparable(example: Example) -> bool:
    """A patient-view example whose every prefetch key was answered (a failed request has no export equivalent)."""
    return example.expected["service"] == "pacing-review" and all(
        isinstance(v, dict) and v.get("resourceType") != "OperationOutcome" for v in example.request["prefetch"].values())


@cache
def original(name: str, engine: RuleEngine) -> Outcome:
    example = next(e for e in EXAMPLES if e.name == name)
    return answered(example, example.request, engine)


def check_always(example: Example, body: dict[str, Any], outcome: Outcome, engine: RuleEngine,
                 steps: list[Step]) -> None:
    """What holds for every legal request."""
    if not outcome.response.cards:
        assert outcome.silence, f"no card and no reason why; {steps}"
    hook = example.expected["service"]
    if hook == "pacing-review" and outcome.eligibility.eligible:
        dose = {f.code for f in outcome.evaluation.findings if f.kind == "dose"}
        assert len(dose) == 1, f"dose recommendations {sorted(dose)}: exactly one is made; {steps}"
    if worklist_comparable(example) and body["prefetch"].keys() == example.request["prefetch"].keys():
        row = row_of(example, body, engine)
        assert row is not None
        assert row["recommendations"].split() == codes(outcome), f"the worklist row differs from the hook; {steps}"
        assert row["dose_proposed"] == first_proposed(outcome.response.cards), steps


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.name)
@PROFILE
@given(data=st.data())
def test_representation_duplicates_and_same_meaning_never_change_the_answer(example: Example, data: st.DataObject,
                                                                           engine: RuleEngine) -> None:
    body, steps = data.draw(varied(example.request, EQUAL))
    changed = answered(example, body, engine)
    assert signature(changed) == signature(original(example.name, engine)), f"the answer changed; {steps}"
    check_always(example, body, changed, engine, steps)


def check_changed(example: Example, body: dict[str, Any], steps: list[Step], engine: RuleEngine) -> None:
    """The invariants of a change that may change the answer."""
    before, after = original(example.name, engine), answered(example, body, engine)
    kinds = {step.kind for step in steps}
    if kinds <= EQUAL_KINDS:
        assert signature(after) == signature(before), f"the answer changed; {steps}"
    lost = set(codes(before)) - set(codes(after))
    if "red-flag" in lost:
        assert any(step.kind == CONDITION_OVER and may_be_over(step, engine) for step in steps), \
            f"a red flag was lost; {steps}"
    if "precaution" in lost and "red-flag" not in codes(after):
        assert kinds & {CONDITION_OVER, READING_REMOVED}, f"a precaution was lost; {steps}"
    if "progress" in codes(after) and "progress" not in codes(before):
        assert kinds & {CONDITION_OVER, READING_REMOVED}, f"progress appeared; {steps}"
    check_always(example, body, after, engine, steps)


# Families of changes that may change the answer, each drawn on its own (so that each gets its share of cases) and
# mixed: (changes, most steps in one variation).
FAMILIES = {"status changes": ([change_status], 3), "removed elements": ([remove_element], 3),
            "any mixture": (ANY, 4)}


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.name)
@PROFILE
@given(data=st.data())
def test_changes_keep_the_invariants(example: Example, family: str, data: st.DataObject, engine: RuleEngine) -> None:
    changes, most = FAMILIES[family]
    body, steps = data.draw(varied(example.request, changes, most=most))
    check_changed(example, body, steps, engine)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.name)
def test_every_single_status_and_removal_of_the_decisive_resources(example: Example, engine: RuleEngine) -> None:
    """The Patient, Conditions, orders, goals and care plans are a few per chart and each is decisive: every status
    code and every optional element removed, one at a time, not left to chance."""
    tried = 0
    for body, step in single_changes(example.request):
        check_changed(example, body, [step], engine)
        tried += 1
    assert tried, "every example has a Patient and a Condition to change"


def test_the_variations_can_change_an_answer(engine: RuleEngine) -> None:
    """The checks above are not vacuous: a reading's value removed does change a progress answer, and the
    signature sees it."""
    example = next(e for e in EXAMPLES if e.name == "progress-walking")
    body = json.loads(json.dumps(example.request))
    for entry in body["prefetch"]["activity"]["entry"]:
        entry["resource"]["status"] = "entered-in-error"
    after = answered(example, body, engine)
    assert signature(after) != signature(original(example.name, engine))
    assert "progress" not in codes(after)
