"""`--now` means the same in every command: a bare date is its morning clinic, 09:00 UTC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cds.clock import CLINIC_HOUR, parse_now
from cds.settings import Settings, load_settings
from tests.support import data


@pytest.fixture(scope="module")
def pinned() -> Settings:
    return load_settings(now=data.NOW)


@given(day=st.dates(min_value=datetime(1900, 1, 1).date(), max_value=datetime(2999, 12, 31).date()))
def test_a_bare_date_is_its_morning_clinic_in_utc(day: object) -> None:
    settings = load_settings()
    assert parse_now(str(day), settings) == datetime.combine(day, datetime.min.time(), UTC).replace(  # type: ignore
        hour=CLINIC_HOUR)


def test_date_times_keep_their_offset_and_a_missing_one_is_utc(pinned: Settings) -> None:
    assert parse_now("2026-11-20T07:30:00", pinned) == datetime(2026, 11, 20, 7, 30, tzinfo=UTC)
    assert parse_now("2026-11-20T07:30:00Z", pinned) == datetime(2026, 11, 20, 7, 30, tzinfo=UTC)
    later = parse_now("2026-11-20T07:30:00-05:00", pinned)
    assert later.utcoffset() == timedelta(hours=-5) and later == datetime(2026, 11, 20, 12, 30, tzinfo=UTC)
    assert later.tzinfo == timezone(timedelta(hours=-5))


def test_without_now_the_pinned_clock_then_the_clock(pinned: Settings) -> None:
    assert parse_now(None, pinned) == data.NOW
    assert abs(parse_now(None, load_settings()) - datetime.now(UTC)) < timedelta(minutes=1)


@pytest.mark.parametrize("text", ["20/11/2026", "tomorrow", "", "2026-13-01"])
def test_anything_else_is_refused(pinned: Settings, text: str) -> None:
    with pytest.raises(ValueError):
        parse_now(text, pinned)
