"""RRuleTrigger: RFC 5545 rules in a zone, checked input, constant cost whatever the age."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from beatkeeper.recurrence import RecurrenceError, RRuleTrigger

from .reference import occurrences_of, rrule_occurrences

LONDON = ZoneInfo("Europe/London")
NEW_YORK = ZoneInfo("America/New_York")


def utc(*fields: int) -> datetime:
    return datetime(*fields, tzinfo=UTC)  # type: ignore[misc]


def upcoming(trigger: RRuleTrigger, after: datetime, count: int) -> list[datetime]:
    found: list[datetime] = []
    for _ in range(count):
        following = trigger.next_after(after)
        if following is None:
            break
        found.append(following)
        after = following
    return found


def test_weekly_rule_in_london_keeps_wall_time_across_dst() -> None:
    trigger = RRuleTrigger("FREQ=WEEKLY;BYDAY=MO,WE", datetime(2024, 3, 18, 9, 0), LONDON)
    assert upcoming(trigger, utc(2024, 3, 20, 12), 3) == [
        utc(2024, 3, 25, 9),  # GMT
        utc(2024, 3, 27, 9),
        utc(2024, 4, 1, 8),  # BST from 31 March
    ]


def test_rrule_prefix_is_accepted_and_case_does_not_matter() -> None:
    plain = RRuleTrigger("FREQ=DAILY", datetime(2024, 1, 1, 6), LONDON)
    prefixed = RRuleTrigger("  rrule:freq=daily ", datetime(2024, 1, 1, 6), LONDON)
    assert plain == prefixed
    assert prefixed.describe() == "RRULE FREQ=DAILY Europe/London"


def test_gap_time_fires_one_gap_length_later() -> None:
    trigger = RRuleTrigger("FREQ=DAILY", datetime(2024, 3, 30, 1, 30), LONDON)
    assert upcoming(trigger, utc(2024, 3, 30, 12), 2) == [
        utc(2024, 3, 31, 1, 30),
        utc(2024, 4, 1, 0, 30),
    ]


def test_ambiguous_time_fires_once_at_its_first_occurrence() -> None:
    trigger = RRuleTrigger("FREQ=DAILY", datetime(2024, 11, 1, 1, 30), NEW_YORK)
    assert upcoming(trigger, utc(2024, 11, 2, 12), 2) == [
        utc(2024, 11, 3, 5, 30),
        utc(2024, 11, 4, 6, 30),
    ]


def test_minutely_rule_across_fall_back_never_repeats_an_instant() -> None:
    trigger = RRuleTrigger("FREQ=MINUTELY;INTERVAL=20", datetime(2024, 11, 2), NEW_YORK)
    found = occurrences_of(trigger, utc(2024, 11, 3, 4), utc(2024, 11, 3, 8))
    assert found == sorted(set(found))
    assert found == rrule_occurrences(
        "FREQ=MINUTELY;INTERVAL=20",
        datetime(2024, 11, 2),
        NEW_YORK,
        utc(2024, 11, 3, 4),
        utc(2024, 11, 3, 8),
    )


def test_last_friday_of_the_month() -> None:
    trigger = RRuleTrigger("FREQ=MONTHLY;BYDAY=-1FR", datetime(2015, 1, 1, 17), ZoneInfo("UTC"))
    assert upcoming(trigger, utc(2026, 1, 1), 2) == [utc(2026, 1, 30, 17), utc(2026, 2, 27, 17)]


def test_interval_phase_is_kept_for_an_old_schedule() -> None:
    # Every other week from Monday 5 Jan 2015: 2026-01-05 is 572 weeks later (even).
    trigger = RRuleTrigger(
        "FREQ=WEEKLY;INTERVAL=2;BYDAY=MO", datetime(2015, 1, 5, 9), ZoneInfo("UTC")
    )
    assert upcoming(trigger, utc(2026, 1, 1), 2) == [utc(2026, 1, 5, 9), utc(2026, 1, 19, 9)]


def test_defaults_derived_from_dtstart_survive_reanchoring() -> None:
    # YEARLY with nothing else fires on DTSTART's month, day and time every year.
    trigger = RRuleTrigger("FREQ=YEARLY", datetime(2012, 2, 29, 7, 45, 10), ZoneInfo("UTC"))
    assert upcoming(trigger, utc(2025, 1, 1), 2) == [
        utc(2028, 2, 29, 7, 45, 10),
        utc(2032, 2, 29, 7, 45, 10),
    ]


def test_count_limits_the_occurrences() -> None:
    trigger = RRuleTrigger("FREQ=DAILY;COUNT=3", datetime(2024, 1, 1, 9), ZoneInfo("UTC"))
    assert upcoming(trigger, utc(2023, 1, 1), 10) == [
        utc(2024, 1, 1, 9),
        utc(2024, 1, 2, 9),
        utc(2024, 1, 3, 9),
    ]
    assert trigger.not_after is not None


def test_utc_until_is_an_inclusive_instant() -> None:
    trigger = RRuleTrigger("FREQ=DAILY;UNTIL=20240703T080000Z", datetime(2024, 7, 1, 9), LONDON)
    assert upcoming(trigger, utc(2024, 6, 1), 10) == [
        utc(2024, 7, 1, 8),
        utc(2024, 7, 2, 8),
        utc(2024, 7, 3, 8),
    ]
    assert trigger.not_after == utc(2024, 7, 3, 8)


def test_local_until_is_a_wall_time_in_the_zone() -> None:
    trigger = RRuleTrigger("FREQ=DAILY;UNTIL=20240703T090000", datetime(2024, 7, 1, 9), LONDON)
    assert len(upcoming(trigger, utc(2024, 6, 1), 10)) == 3


def test_until_as_a_date_includes_that_whole_day() -> None:
    trigger = RRuleTrigger("FREQ=DAILY;UNTIL=20240703", datetime(2024, 7, 1, 23), LONDON)
    assert len(upcoming(trigger, utc(2024, 6, 1), 10)) == 3


def test_dtstart_is_the_first_occurrence_when_it_matches() -> None:
    trigger = RRuleTrigger("FREQ=HOURLY", datetime(2024, 1, 1, 9, 30), ZoneInfo("Asia/Kolkata"))
    assert trigger.not_before == utc(2024, 1, 1, 4, 0)
    assert trigger.next_after(utc(2000, 1, 1)) == utc(2024, 1, 1, 4, 0)


def test_microseconds_of_dtstart_are_dropped() -> None:
    trigger = RRuleTrigger("FREQ=DAILY", datetime(2024, 1, 1, 9, 0, 0, 123), ZoneInfo("UTC"))
    assert trigger.next_after(utc(2024, 1, 1)) == utc(2024, 1, 1, 9)


@pytest.mark.parametrize(
    "part", ["DTSTART:20240101T090000", "RDATE:20240102T090000", "EXDATE:20240102T090000"]
)
def test_start_or_dates_inside_the_rule_are_refused(part: str) -> None:
    with pytest.raises(RecurrenceError, match="comes from startTime"):
        RRuleTrigger(f"{part}\nRRULE:FREQ=DAILY", datetime(2024, 1, 1), LONDON)


def test_dtstart_as_a_part_is_refused() -> None:
    with pytest.raises(
        RecurrenceError, match="DTSTART is not allowed in the rule; the start comes from startTime"
    ):
        RRuleTrigger("FREQ=DAILY;DTSTART=20240101T000000", datetime(2024, 1, 1), LONDON)


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("BYDAY=MO", "rrule: FREQ is required"),
        ("FREQ=FORTNIGHTLY", "rrule: FREQ=FORTNIGHTLY is not one of YEARLY"),
        ("FREQ=DAILY;COUNT=3;UNTIL=20250101T000000Z", "COUNT and UNTIL cannot be used together"),
        ("FREQ=DAILY;FREQ=WEEKLY", "rrule: FREQ appears twice"),
        ("FREQ=DAILY;BYHOUR=24", "rrule BYHOUR: '24' is out of range 0-23"),
        ("FREQ=MONTHLY;BYMONTHDAY=0", "rrule BYMONTHDAY: '0' is out of range 1-31 or -31--1"),
        ("FREQ=DAILY;INTERVAL=0", "rrule INTERVAL: '0' must be a whole number of at least 1"),
        ("FREQ=DAILY;COUNT=-1", "rrule COUNT: '-1' must be a whole number"),
        (
            "FREQ=DAILY;COUNT=1000000",
            "rrule COUNT: 1000000 is more than 100000; use UNTIL, or maxRuns",
        ),
        ("FREQ=DAILY;UNTIL=tomorrow", "rrule UNTIL: 'TOMORROW' must look like 20261231T235959Z"),
        (
            "FREQ=DAILY;UNTIL=20250230T000000Z",
            "rrule UNTIL: '20250230T000000Z' is not a valid date",
        ),
        ("FREQ=DAILY;WKST=XX", "rrule WKST: 'XX' is not one of MO"),
        ("FREQ=DAILY;COLOR=RED", "rrule: unknown part COLOR"),
        ("FREQ=DAILY;BYHOUR", "rrule: 'BYHOUR' is not NAME=VALUE"),
        ("FREQ=YEARLY;BYEASTER=0", "BYEASTER is a dateutil extension"),
        ("FREQ=WEEKLY;BYDAY=XX", "rrule FREQ=WEEKLY;BYDAY=XX: "),
        ("FREQ=DAILY\nFREQ=WEEKLY", "give exactly one RRULE line"),
    ],
)
def test_mistakes_are_named_by_part(rule: str, message: str) -> None:
    with pytest.raises(RecurrenceError) as caught:
        RRuleTrigger(rule, datetime(2024, 1, 1), LONDON)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    "rule",
    [
        "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30",
        "FREQ=MINUTELY;BYMONTH=4;BYMONTHDAY=31",
        "FREQ=DAILY;INTERVAL=7;BYDAY=TU",  # DTSTART is a Monday: every 7 days is never Tuesday
        "FREQ=MONTHLY;BYSETPOS=40;BYDAY=MO",
        "FREQ=YEARLY;INTERVAL=4;BYMONTH=2;BYMONTHDAY=29",  # from 2025: never a leap year
        "FREQ=MINUTELY;INTERVAL=2;BYMINUTE=1",  # even minutes only
        "FREQ=DAILY;UNTIL=20240101T000000Z",  # ends before it starts
    ],
)
def test_rule_that_never_fires_is_refused_quickly(rule: str) -> None:
    with pytest.raises(RecurrenceError, match=r"^never fires"):
        RRuleTrigger(rule, datetime(2025, 1, 6), LONDON)


def test_aware_dtstart_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="naive"):
        RRuleTrigger("FREQ=DAILY", utc(2024, 1, 1), LONDON)


def test_describe_omits_utc() -> None:
    assert RRuleTrigger(
        "FREQ=WEEKLY;BYDAY=MO,WE", datetime(2024, 1, 1), ZoneInfo("UTC")
    ).describe() == ("RRULE FREQ=WEEKLY;BYDAY=MO,WE")


@pytest.mark.parametrize(
    "rule",
    [
        "FREQ=MINUTELY;INTERVAL=5",
        "FREQ=DAILY;BYHOUR=9;BYMINUTE=30",
        "FREQ=WEEKLY;BYDAY=MO,WE,FR",
        "FREQ=MONTHLY;BYDAY=-1FR",
        "FREQ=HOURLY;INTERVAL=7;BYMINUTE=0,30",
        "FREQ=DAILY;COUNT=90000",
    ],
)
def test_query_cost_does_not_grow_with_the_age_of_the_schedule(
    rule: str, generated_walls: list[int]
) -> None:
    trigger = RRuleTrigger(rule, datetime(2016, 1, 1, 8, 7, 3), LONDON)
    generated_walls[0] = 0
    result = trigger.next_after(utc(2026, 6, 1, 12))
    assert result is not None
    assert generated_walls[0] < 40


def test_old_and_new_schedules_agree_with_plain_dateutil() -> None:
    rule, start = "FREQ=HOURLY;INTERVAL=5;BYMINUTE=15", datetime(2019, 3, 31, 0, 15)
    trigger = RRuleTrigger(rule, start, LONDON)
    window = (utc(2024, 3, 30), utc(2024, 4, 1))
    assert occurrences_of(trigger, *window) == rrule_occurrences(rule, start, LONDON, *window)
    assert trigger.next_after(utc(2024, 3, 30)) == trigger.next_after(
        utc(2024, 3, 30) - timedelta(microseconds=1)
    )
