"""CronTrigger fires at the right instants, across DST, in every kind of zone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from beatkeeper.recurrence import CronTrigger, RecurrenceError
from beatkeeper.recurrence.cron import CronTrigger as CronTriggerDirect

from .reference import occurrences_of

LONDON = ZoneInfo("Europe/London")
NEW_YORK = ZoneInfo("America/New_York")


def utc(*fields: int) -> datetime:
    return datetime(*fields, tzinfo=UTC)  # type: ignore[misc]


def upcoming(expression: str, zone: str, after: datetime, count: int) -> list[datetime]:
    trigger = CronTrigger(expression, ZoneInfo(zone))
    found = []
    for _ in range(count):
        after = trigger.next_after(after)  # type: ignore[assignment]
        found.append(after)
    return found


def test_next_after_is_strictly_after_and_in_utc() -> None:
    trigger = CronTrigger("0 9 * * *", ZoneInfo("UTC"))
    result = trigger.next_after(utc(2024, 5, 1, 9))
    assert result == utc(2024, 5, 2, 9)
    assert result is not None
    assert result.tzinfo is UTC


def test_after_may_be_in_any_zone() -> None:
    trigger = CronTrigger("0 9 * * *", LONDON)
    after = datetime(2024, 5, 1, 9, 30, tzinfo=ZoneInfo("Asia/Tokyo"))  # 00:30 UTC
    assert trigger.next_after(after) == utc(2024, 5, 1, 8)  # 09:00 BST


def test_naive_after_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        CronTrigger("* * * * *", LONDON).next_after(datetime(2024, 1, 1))


def test_weekday_mornings_in_london_follow_bst() -> None:
    found = upcoming("0 9 * * 1-5", "Europe/London", utc(2024, 3, 29, 12), 3)
    # Friday 29 March is GMT; Monday 1 April is BST.
    assert found == [utc(2024, 4, 1, 8), utc(2024, 4, 2, 8), utc(2024, 4, 3, 8)]


def test_spring_forward_gap_time_fires_one_gap_length_later() -> None:
    found = upcoming("30 2 * * *", "America/New_York", utc(2024, 3, 9, 12), 2)
    assert found == [utc(2024, 3, 10, 7, 30), utc(2024, 3, 11, 6, 30)]  # 03:30 EDT, 02:30 EDT


def test_gap_time_is_found_from_just_after_the_jump() -> None:
    # 01:15 UTC is 02:15 BST, after the jump; 01:30 (in the gap) still lies ahead at 02:30 BST.
    trigger = CronTrigger("30 1 * * *", LONDON)
    assert trigger.next_after(utc(2024, 3, 31, 1, 15)) == utc(2024, 3, 31, 1, 30)


def test_gap_and_the_hour_after_it_do_not_fire_the_same_instant_twice() -> None:
    found = occurrences_of(
        CronTrigger("*/30 * * * *", LONDON), utc(2024, 3, 30, 23, 50), utc(2024, 3, 31, 3)
    )
    assert found == [utc(2024, 3, 31, 0, 0) + timedelta(minutes=30 * i) for i in range(7)]


def test_ambiguous_time_fires_once_at_its_first_occurrence() -> None:
    found = upcoming("30 1 * * *", "America/New_York", utc(2024, 11, 2, 12), 2)
    assert found == [utc(2024, 11, 3, 5, 30), utc(2024, 11, 4, 6, 30)]  # EDT, then EST


def test_hourly_cron_across_fall_back_fires_once_per_distinct_instant() -> None:
    found = occurrences_of(
        CronTrigger("0 * * * *", LONDON), utc(2024, 10, 26, 23, 30), utc(2024, 10, 27, 4)
    )
    # Wall 01:00 happens twice; it fires at the first (00:00 UTC) only.
    assert found == [
        utc(2024, 10, 27, 0),
        utc(2024, 10, 27, 2),
        utc(2024, 10, 27, 3),
        utc(2024, 10, 27, 4),
    ]


def test_second_pass_of_a_repeated_hour_jumps_to_its_end() -> None:
    # 06:15 UTC is 01:15 EST, the second 01:15; 01:20 .. 01:50 already fired in EDT.
    trigger = CronTrigger("*/10 * * * * *", NEW_YORK)
    assert trigger.next_after(utc(2024, 11, 3, 6, 15)) == utc(2024, 11, 3, 7, 0, 0)


def test_lord_howe_half_hour_fall_back_fires_the_repeated_half_hour_once() -> None:
    found = occurrences_of(
        CronTrigger("*/15 * * * *", ZoneInfo("Australia/Lord_Howe")),
        utc(2024, 4, 6, 14, 0),
        utc(2024, 4, 6, 16, 0),
    )
    assert len(found) == len(set(found))
    assert found == sorted(found)
    # 01:30-01:59 local repeats; its second pass (15:00-15:29 UTC) gets no occurrence.
    assert [t for t in found if utc(2024, 4, 6, 15) <= t < utc(2024, 4, 6, 15, 30)] == []


def test_apia_daily_cron_fires_once_over_the_skipped_day() -> None:
    found = upcoming("0 9 * * *", "Pacific/Apia", utc(2011, 12, 28, 12), 3)
    assert found == [utc(2011, 12, 28, 19), utc(2011, 12, 29, 19), utc(2011, 12, 30, 19)]
    # ... which are 29 Dec (-10), then 31 Dec (+14) once, then 1 Jan.


def test_kolkata_has_a_fixed_half_hour_offset() -> None:
    assert upcoming("0 9 * * *", "Asia/Kolkata", utc(2024, 3, 30), 1) == [utc(2024, 3, 30, 3, 30)]


def test_santiago_midnight_in_a_gap_fires_at_one_oclock() -> None:
    found = upcoming("0 0 * * *", "America/Santiago", utc(2024, 9, 7, 12), 2)
    assert found == [utc(2024, 9, 8, 4), utc(2024, 9, 9, 3)]  # 01:00 -03, then 00:00 -03


def test_seven_is_sunday() -> None:
    assert upcoming("0 0 * * 7", "UTC", utc(2024, 5, 6), 1) == [utc(2024, 5, 12)]  # Sunday


def test_day_of_month_or_day_of_week_when_both_are_restricted() -> None:
    found = upcoming("0 0 13 * 5", "UTC", utc(2024, 9, 1), 4)
    assert found == [utc(2024, 9, 6), utc(2024, 9, 13), utc(2024, 9, 20), utc(2024, 9, 27)]


def test_day_of_month_and_day_of_week_when_one_starts_with_star() -> None:
    # */2 is "every other day", not a restriction in Vixie's sense: both must match.
    found = upcoming("0 0 */2 * MON", "UTC", utc(2024, 9, 1), 3)
    assert found == [utc(2024, 9, 9), utc(2024, 9, 23), utc(2024, 10, 7)]


def test_names_in_ranges() -> None:
    found = upcoming("0 12 * FEB-MAR sat-sun", "UTC", utc(2024, 1, 30), 2)
    assert found == [utc(2024, 2, 3, 12), utc(2024, 2, 4, 12)]


def test_steps_with_a_start_value() -> None:
    assert upcoming("5/20 * * * *", "UTC", utc(2024, 1, 1), 4) == [
        utc(2024, 1, 1, 0, 5),
        utc(2024, 1, 1, 0, 25),
        utc(2024, 1, 1, 0, 45),
        utc(2024, 1, 1, 1, 5),
    ]


def test_macros() -> None:
    after = utc(2024, 5, 15, 10, 30)
    assert upcoming("@hourly", "UTC", after, 1) == [utc(2024, 5, 15, 11)]
    assert upcoming("@daily", "UTC", after, 1) == [utc(2024, 5, 16)]
    assert upcoming("@weekly", "UTC", after, 1) == [utc(2024, 5, 19)]
    assert upcoming("@monthly", "UTC", after, 1) == [utc(2024, 6, 1)]
    assert upcoming("@yearly", "UTC", after, 1) == [utc(2025, 1, 1)]


def test_seconds_field() -> None:
    assert upcoming("*/20 * * * * *", "UTC", utc(2024, 1, 1, 0, 0, 30), 3) == [
        utc(2024, 1, 1, 0, 0, 40),
        utc(2024, 1, 1, 0, 1, 0),
        utc(2024, 1, 1, 0, 1, 20),
    ]


def test_microseconds_in_after_are_respected() -> None:
    trigger = CronTrigger("* * * * * *", ZoneInfo("UTC"))
    assert trigger.next_after(utc(2024, 1, 1) + timedelta(microseconds=1)) == utc(
        2024, 1, 1, 0, 0, 1
    )


def test_leap_day_fires_in_the_next_leap_year() -> None:
    assert upcoming("0 0 29 2 *", "UTC", utc(2025, 1, 1), 1) == [utc(2028, 2, 29)]


def test_rare_leap_day_on_a_sunday_is_still_found() -> None:
    assert upcoming("0 0 29 2 */7", "UTC", utc(2025, 1, 1), 1) == [utc(2032, 2, 29)]


def test_year_end_rollover() -> None:
    assert upcoming("59 23 31 12 *", "UTC", utc(2024, 12, 31, 23, 59), 1) == [
        utc(2025, 12, 31, 23, 59)
    ]


def test_impossible_expression_is_refused_at_construction() -> None:
    with pytest.raises(RecurrenceError, match="never fires"):
        CronTrigger("0 0 31 4,6,9,11 *", LONDON)


def test_describe_names_expression_and_zone() -> None:
    assert CronTrigger("0 9 * * 1-5", LONDON).describe() == 'cron "0 9 * * 1-5" Europe/London'
    assert CronTrigger(" @daily ", ZoneInfo("UTC")).describe() == 'cron "@daily"'


def test_equal_expressions_make_equal_triggers() -> None:
    assert CronTrigger("0 0 * * 7", LONDON) == CronTriggerDirect("0 0 * * SUN", LONDON)
    assert CronTrigger("0 0 * * 7", LONDON) != CronTrigger("0 0 * * 7", NEW_YORK)
    assert len({CronTrigger("@daily", LONDON), CronTrigger("0 0 * * *", LONDON)}) == 1
