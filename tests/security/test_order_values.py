"""An order's dose is bounded where it is read: a hostile timing (frequency 2**63, period 1e-300, a duration of
1e20 minutes) is set aside and reported like any implausible reading, costs no more than a normal order, and the
call is still audited; the dose arithmetic is closed form whatever the numbers."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cds.clinical import dose as dosing
from cds.clinical.records import IMPLAUSIBLE, Dose
from cds.engine import RuleEngine
from cds.fhir.readers.orders import DoseLimits, read_dose
from tests.conftest import LiveService
from tests.fhir.test_faults import audit_of
from tests.support.examples import example, run_example

HOSTILE = [
    {"frequency": 2**63},
    {"frequency": 10**7},
    {"period": 1e-300},
    {"period": 5e-324},
    {"duration": 1e20},
    {"duration": 2e9},
    {"duration": 1e300, "durationUnit": "h"},
    {"frequency": 2**64 - 1, "periodUnit": "d", "period": 1e-10},
]
LIMITS = DoseLimits(14, 300)


def _timed(resource: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(resource)
    out["occurrenceTiming"]["repeat"].update(change)
    return out


def _current_order(body: dict[str, Any]) -> dict[str, Any]:
    resource: dict[str, Any] = body["prefetch"]["exercise-orders"]["entry"][0]["resource"]
    return resource


def _draft(body: dict[str, Any]) -> dict[str, Any]:
    resource: dict[str, Any] = body["context"]["draftOrders"]["entry"][0]["resource"]
    return resource


@pytest.mark.parametrize("change", HOSTILE, ids=str)
def test_an_implausible_timing_is_set_aside_with_its_reason(change: dict[str, Any]) -> None:
    body, _ = example("step-back-flare")
    dose, problem = read_dose(_timed(_current_order(body), change), [], LIMITS)
    assert dose is None
    assert problem is not None and "not plausible" in problem


@pytest.mark.parametrize("change", [{"frequency": 2, "periodUnit": "d"}, {"duration": 5, "durationUnit": "h"},
                                    {"frequency": 1, "period": 366, "periodUnit": "wk"}], ids=str)
def test_the_bounds_keep_every_plausible_dose(change: dict[str, Any]) -> None:
    """Two sessions a day, five-hour sessions: the limits themselves are doses."""
    body, _ = example("step-back-flare")
    dose, problem = read_dose(_timed(_current_order(body), change), [], LIMITS)
    assert problem is None
    assert dose is not None or change.get("period") == 366  # once in 366 weeks is no weekly dose, nor implausible


@pytest.mark.parametrize("change", HOSTILE, ids=str)
def test_a_current_order_with_an_implausible_dose_holds_and_says_why(engine: RuleEngine,
                                                                      change: dict[str, Any]) -> None:
    outcome = run_example("step-back-flare", engine, lambda body: _current_order(body).update(
        _timed(_current_order(body), change)))
    assert outcome.features.dose_unread
    assert [c.source.topic.code for c in outcome.response.cards if c.source.topic] == ["data-quality"]
    detail = outcome.response.cards[0].detail or ""
    assert "no dose that can be read" in detail and "Set aside: 1 reading (implausible value)" in detail, detail
    assert any(item.reason == IMPLAUSIBLE and item.source.startswith("ServiceRequest/")
               for item in outcome.record.set_aside)


@pytest.mark.parametrize("change", HOSTILE, ids=str)
def test_a_draft_with_an_implausible_dose_is_reported(engine: RuleEngine, change: dict[str, Any]) -> None:
    outcome = run_example("order-in-a-flare", engine, lambda body: _draft(body).update(_timed(_draft(body), change)))
    assert [f for f in outcome.facts if f.get("t") == "order"][0]["dose_unread"]
    assert any("dose set aside" in item.why for item in outcome.record.set_aside)
    details = " ".join(c.detail or "" for c in outcome.response.cards)
    assert "implausible value" in details, details


def test_a_care_plan_activity_with_an_implausible_dose_is_set_aside(engine: RuleEngine) -> None:
    def as_care_plan(body: dict[str, Any]) -> None:
        order = _current_order(body)
        activity = {"detail": {"status": "in-progress", "code": order["code"],
                               "scheduledTiming": _timed(order, {"frequency": 2**63})["occurrenceTiming"]}}
        plan = {"resourceType": "CarePlan", "id": "plan-1", "status": "active", "intent": "plan",
                "subject": order["subject"], "period": {"start": "2026-10-01"}, "activity": [activity]}
        body["prefetch"]["exercise-orders"]["entry"] = []
        body["prefetch"]["careplans"] = {"resourceType": "Bundle", "type": "searchset",
                                         "entry": [{"resource": plan}]}

    outcome = run_example("step-back-flare", engine, as_care_plan)
    assert [(item.source, item.reason) for item in outcome.record.set_aside] == [
        ("CarePlan/plan-1#activity-1", IMPLAUSIBLE)]
    assert outcome.features.dose_unread


def _reference_sessions(weekly: float, most: int, minutes: float) -> int:
    """The definition: drop a session while there is more than one and each would be shorter than `minutes`."""
    per_week = most
    while per_week > 1 and weekly / per_week < minutes:
        per_week -= 1
    return per_week


@given(weekly=st.floats(0, 5000, allow_nan=False), most=st.integers(1, 40), minutes=st.floats(0.5, 60))
def test_sessions_at_least_is_the_definition_in_closed_form(weekly: float, most: int, minutes: float) -> None:
    assert dosing.sessions_at_least(weekly, most, minutes) == _reference_sessions(weekly, most, minutes)


@given(most=st.integers(1, 2**80), weekly=st.floats(0, 1e6, allow_nan=False))
def test_step_back_and_rebaseline_cost_nothing_for_any_count_of_sessions(most: int, weekly: float) -> None:
    """However many sessions a week a dose carries, the step-back keeps each at least session_min_minutes."""
    params = {"step_back_fraction": 0.8, "baseline_fraction": 0.8, "session_min_minutes": 5.0}
    plan = Dose(20, most)
    stepped = dosing.step_back(plan, weekly or None, [], params)
    assert 1 <= stepped.per_week <= most
    assert stepped.per_week == 1 or stepped.minutes >= 5
    again = dosing.rebaseline(plan, weekly or None, params)
    assert again is None or 1 <= again.per_week <= most


def test_hostile_orders_on_every_thread_leave_the_service_answering(live_service: Callable[..., LiveService],
                                                                    http: httpx.Client) -> None:
    """As many hostile calls as the service has threads, at once: each is answered, then /healthz and a normal
    call are, and every call is audited."""
    service = live_service(workers="1", threads="4")
    body, _ = example("step-back-flare")
    bodies = []
    for change in HOSTILE[:4]:
        hostile = copy.deepcopy(body)
        hostile["hookInstance"] = str(uuid.uuid4())
        _current_order(hostile).update(_timed(_current_order(hostile), change))
        bodies.append(hostile)
    url = service.url + "/cds-services/pacing-review"
    with ThreadPoolExecutor(len(bodies)) as pool:
        answers = list(pool.map(lambda b: httpx.post(url, json=b, timeout=60.0), bodies))
    assert [a.status_code for a in answers] == [200] * len(bodies)
    assert all(a.json()["cards"][0]["source"]["topic"]["code"] == "data-quality" for a in answers)
    assert http.get(service.url + "/healthz").status_code == 200
    assert http.post(url, json=body).status_code == 200
    for sent in bodies:
        assert audit_of(service, sent["hookInstance"])["status"] == 200
