"""Dose arithmetic (docs/clinical.md, recommendations) and its worked examples, with parameters given here."""

from __future__ import annotations

import pytest

from cds.clinical import dose
from cds.clinical.records import Dose

PARAMS = {"baseline_fraction": 0.8, "progression_step": 0.10, "session_target_minutes": 30, "frequency_max": 5,
          "session_max_minutes": 60, "step_back_fraction": 0.8, "session_min_minutes": 5}


@pytest.mark.parametrize(("before", "after"), [
    (Dose(20, 3), Dose(22, 3)),   # 60 -> 66 -> 22 min x 3 (worked example)
    (Dose(30, 3), Dose(25, 4)),   # 90 -> 99 -> 33 > 30, a fourth session: 24.75 -> 25 (worked example)
    (Dose(25, 4), Dose(28, 4)),   # 100 -> 110 -> 27.5 -> 28
    (Dose(30, 4), Dose(26, 5)),   # 120 -> 132 -> 33 > 30, a fifth session: 26.4 -> 26
    (Dose(30, 5), Dose(33, 5)),   # at 5 a week sessions lengthen
    (Dose(5, 2), Dose(6, 2)),     # 10 -> 11 -> 5.5 rounds to 6
    (Dose(3, 1), Dose(4, 1)),     # 3.3 would round back to 3: at least +1 minute
    (Dose(58, 5), Dose(60, 5)),   # capped at session_max_minutes
    (Dose(60, 5), Dose(60, 5)),   # nothing left to add
])
def test_progress(before: Dose, after: Dose) -> None:
    assert dose.progress(before, PARAMS) == after


def test_progress_step_is_a_parameter() -> None:
    assert dose.progress(Dose(20, 3), {**PARAMS, "progression_step": 0.2}) == Dose(24, 3)


@pytest.mark.parametrize(("quota", "after"), [(5000, 5500), (3000, 3300), (4800, 5300), (150, 300)])
def test_step_quota_progress_rounds_to_hundreds(quota: float, after: int) -> None:
    assert dose.progress_quota(quota, PARAMS) == after


def test_start_is_80_percent_of_baseline() -> None:
    assert dose.start_dose(25, 3, PARAMS) == Dose(20, 3)
    assert dose.start_dose(0.4, 0, PARAMS) == Dose(1, 1)
    assert dose.start_quota(6000, PARAMS) == 4800
    assert dose.start_quota(6060, PARAMS) == 4800


def test_step_back_is_80_percent_of_the_lowest_of_plan_done_and_last_tolerated() -> None:
    assert dose.step_back(Dose(25, 4), None, [], PARAMS) == Dose(20, 4)              # 100 -> 80
    assert dose.step_back(Dose(25, 4), 100, [Dose(20, 3)], PARAMS) == Dose(12, 4)    # 0.8 x 60 = 48, sessions kept
    assert dose.step_back(Dose(25, 4), None, [Dose(30, 4)], PARAMS) == Dose(20, 4)   # a higher old dose is ignored
    assert dose.step_back(Dose(25, 4), 130, [], PARAMS) == Dose(20, 4)               # doing more than the plan


def test_step_back_from_what_was_done_keeps_sessions_long_enough() -> None:
    # 120 planned, 15 done: 0.8 x 15 = 12 a week; 3 of 4 min would be under 5 min, so 2 sessions of 6 min.
    assert dose.step_back(Dose(40, 3), 15, [], PARAMS) == Dose(6, 2)
    assert dose.step_back(Dose(40, 3), 0, [], PARAMS) == Dose(32, 3)                 # nothing recorded: the plan
    assert dose.step_back_quota(6000, None, PARAMS) == 4800
    assert dose.step_back_quota(6000, 3000, PARAMS) == 2400                          # from the steps walked


def test_percent_change() -> None:
    assert dose.percent_change(60, 66) == "+10 %"
    assert dose.percent_change(100, 80) == "-20 %"
