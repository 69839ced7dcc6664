"""The contract with durable-rules' C core, pinned in one place. cds/engine/host.py calls functions durable-rules does
not document (`durable_rules_engine`), as durable-rules' own Python host calls them. A new build, compiler or Python
that changes one of these calls or the shape of what it returns fails here, by name, before any clinical test."""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable, Iterator
from typing import Any

import durable_rules_engine as core
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cds.engine.host import DEFERRED, NOT_HANDLED, OBSERVED, SENTINEL_FACT, SENTINEL_RULE, _text

RULES = {
    SENTINEL_RULE: {"all": [{"m": dict(SENTINEL_FACT)}]},
    "pair": {"all": [{"p": {"$and": [{"t": "a"}, {"x": 1}]}}]},
    "either": {"all": [{"p": {"$or": [{"y": 1}, {"z": 1}]}}]},
    "positive": {"all": [{"p": {"$and": [{"t": "n"}, {"$gt": {"v": 0}}]}}]},
}


def text(value: Any) -> str:
    return orjson.dumps(value).decode()


@pytest.fixture(scope="module")
def ruleset() -> int:
    handle = core.create_ruleset("pacing-cds-core-contract", text(RULES))
    assert isinstance(handle, int)
    return handle


@pytest.fixture
def session(ruleset: int) -> Iterator[str]:
    sid = "contract-1"
    yield sid
    core.delete_state(ruleset, sid)


def actions(ruleset: int, fact: dict[str, Any], write: Callable[[Any], str] = text) -> tuple[int, list[dict[str, Any]]]:
    """Assert one fact; (the result code, every action message handed out), as cds/engine/host.py runs them."""
    result, offset = core.assert_fact(ruleset, write(fact))
    assert isinstance(result, int) and isinstance(offset, int)
    messages: list[dict[str, Any]] = []
    if result in (NOT_HANDLED, OBSERVED):
        return result, messages
    started = core.start_action_for_state(ruleset, 0 if result == DEFERRED else offset)
    if started is None:
        return result, messages
    state, message = started
    assert isinstance(state, str) and isinstance(message, str)
    while message is not None:
        messages.append(orjson.loads(message))
        core.update_state(ruleset, state)
        message = core.complete_and_start_action(ruleset, 0 if result == DEFERRED else offset)
    return result, messages


def test_the_version_the_contract_was_written_for() -> None:
    assert importlib.metadata.version("durable_rules") == "2.0.28"


def test_a_matched_fact_hands_out_its_rule_and_the_facts_by_alias(ruleset: int, session: str) -> None:
    assert actions(ruleset, {**SENTINEL_FACT, "sid": session}) == (0, [{SENTINEL_RULE: {"m": {**SENTINEL_FACT,
                                                                                              "sid": session}}}])
    fact = {"t": "a", "x": 1, "sid": session}
    assert actions(ruleset, fact) == (0, [{"pair": {"p": fact}}])


def test_a_fact_no_rule_matches_is_not_handled(ruleset: int, session: str) -> None:
    actions(ruleset, {**SENTINEL_FACT, "sid": session})
    assert actions(ruleset, {"t": "b", "sid": session}) == (NOT_HANDLED, [])


def test_each_branch_of_an_or_is_a_rule_of_its_own(ruleset: int, session: str) -> None:
    """Why the host keeps one firing per rule and facts matched: a fact meeting both branches fires twice."""
    actions(ruleset, {**SENTINEL_FACT, "sid": session})
    fact = {"t": "c", "y": 1, "z": 1, "sid": session}
    assert actions(ruleset, fact) == (0, [{"either": {"p": fact}}, {"either": {"p": fact}}])


def test_an_abandoned_action_leaves_the_ruleset_usable(ruleset: int) -> None:
    """The host abandons the action of a rule whose Python side raised, and deletes the session; the next session
    runs as usual."""
    first, second = "contract-abandoned", "contract-after"
    actions(ruleset, {**SENTINEL_FACT, "sid": first})
    result, offset = core.assert_fact(ruleset, text({"t": "a", "x": 1, "sid": first}))
    assert result == 0 and core.start_action_for_state(ruleset, offset) is not None
    core.abandon_action(ruleset, offset)
    core.delete_state(ruleset, first)
    try:
        actions(ruleset, {**SENTINEL_FACT, "sid": second})
        fact = {"t": "a", "x": 1, "sid": second}
        assert actions(ruleset, fact) == (0, [{"pair": {"p": fact}}])
    finally:
        core.delete_state(ruleset, second)


def test_the_core_refuses_an_exponent_after_a_mantissa_without_a_fraction(ruleset: int, session: str) -> None:
    """orjson writes 1e-7 and 1e+20 so; the core's parser refuses them (error 204), and reads 1.0e-7."""
    actions(ruleset, {**SENTINEL_FACT, "sid": session})
    with pytest.raises(core.error, match="204"):
        core.assert_fact(ruleset, f'{{"t": "n", "v": 1e-7, "sid": "{session}"}}')
    result, offset = core.assert_fact(ruleset, f'{{"t": "n", "v": 1.0e-7, "sid": "{session}"}}')
    assert result == 0


@given(value=st.floats(allow_nan=False, allow_infinity=False))
def test_every_finite_number_the_host_writes_is_read_and_compared_as_that_number(ruleset: int, value: float) -> None:
    sid = "contract-number"
    try:
        actions(ruleset, {**SENTINEL_FACT, "sid": sid})
        fact = {"t": "n", "v": value, "sid": sid}
        _, fired = actions(ruleset, fact, _text)
        assert fired == ([{"positive": {"p": fact}}] if value > 0 else [])
    finally:
        core.delete_state(ruleset, sid)
