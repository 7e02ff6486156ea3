"""Recurrence: a trigger inside start, end, maxRuns, exclusions, with deterministic jitter."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from beatkeeper.recurrence import (
    AtTrigger,
    CronTrigger,
    IntervalTrigger,
    Recurrence,
    RecurrenceError,
    RRuleTrigger,
    Trigger,
)

UTC_ZONE = ZoneInfo("UTC")
TOKYO = ZoneInfo("Asia/Tokyo")


def utc(*fields: int) -> datetime:
    return datetime(*fields, tzinfo=UTC)  # type: ignore[misc]


class CountingTrigger:
    """Wraps a trigger and counts how often it is asked."""

    def __init__(self, inner: Trigger) -> None:
        self.inner = inner
        self.calls = 0

    def next_after(self, after: datetime) -> datetime | None:
        self.calls += 1
        return self.inner.next_after(after)

    def describe(self) -> str:
        return self.inner.describe()


def daily(zone: ZoneInfo = UTC_ZONE) -> CronTrigger:
    return CronTrigger("0 9 * * *", zone)


def test_an_occurrence_at_start_is_allowed() -> None:
    recurrence = Recurrence(daily(), UTC_ZONE, start=utc(2024, 1, 1, 9))
    assert recurrence.next_after(utc(2023, 1, 1)) == utc(2024, 1, 1, 9)
    assert recurrence.first() == utc(2024, 1, 1, 9)


def test_an_occurrence_at_end_is_allowed_and_nothing_after() -> None:
    recurrence = Recurrence(daily(), UTC_ZONE, start=utc(2024, 1, 1), end=utc(2024, 1, 3, 9))
    assert recurrence.occurrences(utc(2023, 1, 1), 10) == [utc(2024, 1, d, 9) for d in (1, 2, 3)]
    assert recurrence.next_after(utc(2024, 1, 3, 9)) is None
    assert recurrence.last() == utc(2024, 1, 3, 9)


def test_excluded_dates_are_local_calendar_dates() -> None:
    # 01:00 in Tokyo is 16:00 UTC the day before.
    recurrence = Recurrence(
        CronTrigger("0 1 * * *", TOKYO), TOKYO, exclude_dates=frozenset({date(2024, 5, 2)})
    )
    assert recurrence.occurrences(utc(2024, 4, 30, 12), 2) == [
        utc(2024, 4, 30, 16),
        utc(2024, 5, 2, 16),
    ]


def test_excluded_month_is_skipped_in_one_jump() -> None:
    trigger = CountingTrigger(CronTrigger("* * * * *", UTC_ZONE))
    recurrence = Recurrence(trigger, UTC_ZONE, exclude_months=frozenset({6}))
    assert recurrence.next_after(utc(2024, 5, 31, 23, 59, 30)) == utc(2024, 7, 1)
    assert trigger.calls <= 3


def test_a_run_of_excluded_dates_and_months_is_skipped_in_one_jump() -> None:
    trigger = CountingTrigger(CronTrigger("*/5 * * * *", UTC_ZONE))
    dates = frozenset(date(2024, 1, 29) + timedelta(days=i) for i in range(3))  # 29 Jan .. 31 Jan
    recurrence = Recurrence(
        trigger, UTC_ZONE, exclude_dates=dates, exclude_months=frozenset({2, 3})
    )
    assert recurrence.next_after(utc(2024, 1, 28, 23, 58)) == utc(2024, 4, 1)
    assert trigger.calls <= 3


def test_excluding_every_month_never_fires() -> None:
    recurrence = Recurrence(daily(), UTC_ZONE, exclude_months=frozenset(range(1, 13)))
    assert recurrence.next_after(utc(2024, 1, 1)) is None
    assert recurrence.first() is None


def test_search_gives_up_after_a_hundred_years() -> None:
    recurrence = Recurrence(
        CronTrigger("0 0 1 1 *", UTC_ZONE), UTC_ZONE, exclude_months=frozenset({1})
    )
    started = time.perf_counter()
    assert recurrence.next_after(utc(2024, 1, 1)) is None
    assert time.perf_counter() - started < 1


def test_max_runs_uses_the_planned_count_when_given() -> None:
    recurrence = Recurrence(daily(), UTC_ZONE, start=utc(2024, 1, 1), max_runs=3)
    assert recurrence.next_after(utc(2024, 6, 1), planned_so_far=2) == utc(2024, 6, 1, 9)
    assert recurrence.next_after(utc(2024, 6, 1), planned_so_far=3) is None


def test_max_runs_counts_from_start_when_no_count_is_given() -> None:
    recurrence = Recurrence(daily(), UTC_ZONE, start=utc(2024, 1, 1), max_runs=3)
    assert recurrence.next_after(utc(2024, 1, 2, 12)) == utc(2024, 1, 3, 9)
    assert recurrence.next_after(utc(2024, 1, 3, 9)) is None
    assert recurrence.last() == utc(2024, 1, 3, 9)


def test_max_runs_counts_only_allowed_occurrences() -> None:
    recurrence = Recurrence(
        daily(),
        UTC_ZONE,
        start=utc(2024, 1, 1),
        max_runs=2,
        exclude_dates=frozenset({date(2024, 1, 1)}),
    )
    assert recurrence.occurrences(utc(2023, 1, 1), 5) == [utc(2024, 1, 2, 9), utc(2024, 1, 3, 9)]


def test_occurrences_advance_the_planned_count() -> None:
    recurrence = Recurrence(daily(), UTC_ZONE, start=utc(2024, 1, 1), max_runs=5)
    assert len(recurrence.occurrences(utc(2024, 3, 1), 10, planned_so_far=2)) == 3


def test_zero_max_runs_never_fires() -> None:
    recurrence = Recurrence(daily(), UTC_ZONE, start=utc(2024, 1, 1), max_runs=0)
    assert recurrence.next_after(utc(2024, 1, 1)) is None
    assert recurrence.first() is None
    assert recurrence.last() is None


def test_max_runs_for_a_cron_needs_a_start() -> None:
    with pytest.raises(ValueError, match="max_runs needs a start"):
        Recurrence(daily(), UTC_ZONE, max_runs=3)


def test_rrule_and_interval_start_on_their_own() -> None:
    rrule = RRuleTrigger("FREQ=DAILY;BYHOUR=9,21", datetime(2024, 1, 1), UTC_ZONE)
    assert Recurrence(rrule, UTC_ZONE, max_runs=3).last() == utc(2024, 1, 2, 9)
    interval = IntervalTrigger(timedelta(hours=7), utc(2024, 1, 1))
    assert Recurrence(interval, UTC_ZONE).first() == utc(2024, 1, 1)


def test_first_is_none_when_the_end_comes_first() -> None:
    recurrence = Recurrence(daily(), UTC_ZONE, start=utc(2024, 1, 1, 10), end=utc(2024, 1, 2, 8))
    assert recurrence.first() is None
    assert recurrence.last() is None


def test_last_of_an_unbounded_schedule_is_none() -> None:
    assert Recurrence(daily(), UTC_ZONE).last() is None
    assert Recurrence(IntervalTrigger(timedelta(hours=1), utc(2024, 1, 1)), UTC_ZONE).last() is None


def test_last_of_a_finite_trigger() -> None:
    assert Recurrence(AtTrigger(utc(2026, 12, 1)), UTC_ZONE).last() == utc(2026, 12, 1)
    counted = RRuleTrigger(
        "FREQ=WEEKLY;COUNT=10", datetime(2024, 1, 1, 9), ZoneInfo("Europe/London")
    )
    assert Recurrence(counted, ZoneInfo("Europe/London")).last() == utc(2024, 3, 4, 9)
    until = RRuleTrigger("FREQ=DAILY;UNTIL=20240110T120000Z", datetime(2024, 1, 1, 9), UTC_ZONE)
    assert Recurrence(until, UTC_ZONE).last() == utc(2024, 1, 10, 9)


def test_last_is_cheap_for_a_dense_schedule_with_a_far_end() -> None:
    recurrence = Recurrence(
        CronTrigger("* * * * * *", UTC_ZONE),
        UTC_ZONE,
        end=utc(2036, 6, 1, 12, 0, 0, 500_000),
        exclude_dates=frozenset({date(2036, 6, 1)}),
    )
    started = time.perf_counter()
    assert recurrence.last() == utc(2036, 5, 31, 23, 59, 59)
    assert time.perf_counter() - started < 1


def test_jitter_is_deterministic_and_bounded() -> None:
    recurrence = Recurrence(daily(), UTC_ZONE, jitter=timedelta(minutes=5), seed="uid-1")
    planned = utc(2024, 1, 1, 9)
    delay = recurrence.jitter_for(planned)
    assert timedelta(0) <= delay <= timedelta(minutes=5)
    assert delay == Recurrence(
        daily(), UTC_ZONE, jitter=timedelta(minutes=5), seed="uid-1"
    ).jitter_for(planned)
    assert delay == recurrence.jitter_for(planned.astimezone(TOKYO))


def test_jitter_differs_between_schedules_and_occurrences() -> None:
    delays = {
        Recurrence(daily(), UTC_ZONE, jitter=timedelta(hours=1), seed=seed).jitter_for(
            utc(2024, 1, day, 9)
        )
        for seed in ("a", "b", "c")
        for day in (1, 2, 3)
    }
    assert len(delays) == 9


def test_no_jitter_is_zero_delay() -> None:
    assert Recurrence(daily(), UTC_ZONE).jitter_for(utc(2024, 1, 1)) == timedelta(0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"exclude_months": frozenset({13})}, "exclude months: 13 is not a month number"),
        ({"jitter": timedelta(seconds=-1)}, "jitter must not be negative"),
        ({"max_runs": -1, "start": utc(2024, 1, 1)}, "maxRuns must not be negative"),
    ],
)
def test_bad_bounds_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(RecurrenceError, match=message):
        Recurrence(daily(), UTC_ZONE, **kwargs)  # type: ignore[arg-type]


def test_naive_bounds_are_a_programming_error() -> None:
    with pytest.raises(ValueError, match="start must be timezone-aware"):
        Recurrence(daily(), UTC_ZONE, start=datetime(2024, 1, 1))


def test_equal_recurrences_compare_equal() -> None:
    assert Recurrence(daily(), UTC_ZONE, seed="x") == Recurrence(daily(), UTC_ZONE, seed="x")
    assert hash(Recurrence(daily(), UTC_ZONE)) == hash(Recurrence(daily(), UTC_ZONE))
