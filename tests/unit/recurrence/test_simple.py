"""Interval triggers count elapsed time in O(1); at-triggers fire once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from beatkeeper.recurrence import AtTrigger, IntervalTrigger, RecurrenceError

from .reference import examples


def utc(*fields: int) -> datetime:
    return datetime(*fields, tzinfo=UTC)  # type: ignore[misc]


def test_interval_fires_at_first_then_every_period() -> None:
    trigger = IntervalTrigger(timedelta(minutes=15), utc(2024, 1, 1, 9))
    assert trigger.next_after(utc(2023, 1, 1)) == utc(2024, 1, 1, 9)
    assert trigger.next_after(utc(2024, 1, 1, 9)) == utc(2024, 1, 1, 9, 15)
    assert trigger.next_after(utc(2024, 1, 1, 9, 14, 59)) == utc(2024, 1, 1, 9, 15)


def test_interval_ignores_dst_because_it_is_elapsed_time() -> None:
    london = ZoneInfo("Europe/London")
    trigger = IntervalTrigger(timedelta(hours=1), datetime(2024, 3, 30, 23, tzinfo=london))
    first = trigger.next_after(utc(2024, 3, 31))
    second = trigger.next_after(first)  # type: ignore[arg-type]
    assert first is not None
    assert second is not None
    assert second - first == timedelta(hours=1)
    assert first.tzinfo is UTC


def test_interval_ten_years_old_with_one_second_period_is_immediate() -> None:
    trigger = IntervalTrigger(timedelta(seconds=1), utc(2016, 1, 1))
    assert trigger.next_after(utc(2026, 1, 1, 0, 0, 0) + timedelta(microseconds=5)) == utc(
        2026, 1, 1, 0, 0, 1
    )


@settings(max_examples=examples(200), deadline=None)
@given(
    every=st.timedeltas(min_value=timedelta(microseconds=1), max_value=timedelta(days=400)),
    offset=st.timedeltas(min_value=timedelta(days=-5000), max_value=timedelta(days=5000)),
)
def test_interval_result_is_the_first_multiple_strictly_after(
    every: timedelta, offset: timedelta
) -> None:
    first = utc(2020, 1, 1)
    after = first + offset
    result = IntervalTrigger(every, first).next_after(after)
    assert result is not None
    assert result > after
    assert (result - first) % every == timedelta(0)
    assert result == first or result - every <= after


@pytest.mark.parametrize(
    ("every", "text"),
    [
        (timedelta(minutes=15), "every 15m"),
        (timedelta(seconds=90), "every 1m30s"),
        (timedelta(hours=1, minutes=30), "every 1h30m"),
        (timedelta(days=2), "every 2d"),
        (timedelta(weeks=1), "every 1w"),
        (timedelta(milliseconds=1500), "every 1s500ms"),
    ],
)
def test_interval_describes_itself_like_a_spec_duration(every: timedelta, text: str) -> None:
    assert IntervalTrigger(every, utc(2024, 1, 1)).describe() == text


@pytest.mark.parametrize("every", [timedelta(0), timedelta(seconds=-5)])
def test_interval_must_be_positive(every: timedelta) -> None:
    with pytest.raises(RecurrenceError, match="interval must be positive"):
        IntervalTrigger(every, utc(2024, 1, 1))


def test_interval_needs_an_aware_first_instant() -> None:
    with pytest.raises(ValueError, match="first must be timezone-aware"):
        IntervalTrigger(timedelta(minutes=1), datetime(2024, 1, 1))


def test_at_fires_once() -> None:
    trigger = AtTrigger(datetime(2026, 12, 1, 10, tzinfo=ZoneInfo("Europe/Berlin")))
    assert trigger.next_after(utc(2026, 1, 1)) == utc(2026, 12, 1, 9)
    assert trigger.next_after(utc(2026, 12, 1, 9)) is None
    assert trigger.describe() == "at 2026-12-01T09:00:00Z"
    assert trigger.not_after == trigger.not_before == utc(2026, 12, 1, 9)
