"""Cron expressions are parsed the Vixie way, and every mistake gets a clear message."""

from __future__ import annotations

import pytest

from beatkeeper.recurrence import RecurrenceError
from beatkeeper.recurrence.cron_syntax import parse


def test_five_fields_fire_at_second_zero() -> None:
    fields = parse("*/20 * * * *")
    assert fields.seconds == {0}
    assert fields.minutes == {0, 20, 40}


def test_six_fields_put_seconds_first() -> None:
    fields = parse("*/15 30 9 * * *")
    assert fields.seconds == {0, 15, 30, 45}
    assert fields.minutes == {30}
    assert fields.hours == {9}


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("*", set(range(60))),
        ("7", {7}),
        ("10-13", {10, 11, 12, 13}),
        ("10-30/10", {10, 20, 30}),
        ("5/20", {5, 25, 45}),
        ("*/25", {0, 25, 50}),
        ("1,3-4,*/30", {0, 1, 3, 4, 30}),
    ],
)
def test_minute_field_forms(field: str, expected: set[int]) -> None:
    assert parse(f"{field} * * * *").minutes == expected


def test_month_and_day_names_are_case_insensitive_and_work_in_ranges() -> None:
    fields = parse("0 0 * jan-Mar,DEC mon-FRI")
    assert fields.months == {1, 2, 3, 12}
    assert fields.days_of_week == {1, 2, 3, 4, 5}


def test_seven_is_sunday_and_five_to_seven_is_friday_to_sunday() -> None:
    assert parse("0 0 * * 7").days_of_week == {0}
    assert parse("0 0 * * 5-7").days_of_week == {5, 6, 0}


def test_a_day_field_starting_with_star_counts_as_unrestricted() -> None:
    fields = parse("0 0 */2 * 1")
    assert not fields.day_of_month_restricted
    assert fields.day_of_week_restricted
    assert parse("0 0 13 * 5").day_of_month_restricted


@pytest.mark.parametrize(
    ("macro", "expanded"),
    [
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@monthly", "0 0 1 * *"),
        ("@weekly", "0 0 * * 0"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@hourly", "0 * * * *"),
        ("@DAILY", "0 0 * * *"),
    ],
)
def test_macros_expand_to_their_five_field_form(macro: str, expanded: str) -> None:
    assert parse(macro) == parse(expanded)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("61 * * * *", "minute field: 61 is out of range 0-59"),
        ("0 24 * * *", "hour field: 24 is out of range 0-23"),
        ("0 0 0 * *", "day-of-month field: 0 is out of range 1-31"),
        ("0 0 * 13 *", "month field: 13 is out of range 1-12"),
        ("0 0 * * 8", "day-of-week field: 8 is out of range 0-7"),
        ("60 0 0 * * *", "second field: 60 is out of range 0-59"),
        ("0 5-2 * * *", "hour field: range 5-2 is reversed"),
        ("*/0 * * * *", "minute field: step 0 in '*/0' must be at least 1"),
        ("*/x * * * *", "minute field: step 'x' is not a whole number"),
        ("1,,2 * * * *", "minute field: '1,,2' has an empty list item"),
        ("0 0 * * FUNDAY", "day-of-week field: 'FUNDAY' is not a number 0-7 or a name SUN-SAT"),
        ("0 0 * FOO *", "month field: 'FOO' is not a number 1-12 or a name JAN-DEC"),
        ("0 0 * * * * *", "has 7 fields; expected 5"),
        ("0 0 *", "has 3 fields; expected 5"),
        ("", "has 0 fields"),
        ("@reboot", "@reboot is not supported"),
        ("@often", "cron macro '@often' is unknown"),
    ],
)
def test_mistakes_are_named_by_field(expression: str, message: str) -> None:
    with pytest.raises(
        RecurrenceError, match="^.*" + message.replace("*", r"\*").replace("(", r"\(")
    ):
        parse(expression)


@pytest.mark.parametrize(
    ("expression", "token"),
    [
        ("0 0 L * *", "'L'"),
        ("0 0 15W * *", "'15W'"),
        ("0 0 LW * *", "'LW'"),
        ("0 0 ? * MON", "'?'"),
        ("0 0 * * 5#3", "'5#3'"),
        ("0 0 * * 5L", "'5L'"),
    ],
)
def test_quartz_syntax_is_refused_with_a_hint_to_use_rrule(expression: str, token: str) -> None:
    with pytest.raises(RecurrenceError, match="Quartz") as caught:
        parse(expression)
    assert token in str(caught.value)
    assert "rrule" in str(caught.value)


def test_messages_are_plain_value_errors() -> None:
    with pytest.raises(ValueError, match="minute field"):
        parse("99 * * * *")


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("0 0 30 2 *", "never fires: day-of-month 30 never occurs in FEB"),
        ("0 0 31 4,6,9,11 *", "never fires: day-of-month 31 never occurs in APR,JUN,SEP,NOV"),
        ("0 0 30,31 FEB *", "never fires: day-of-month 30,31 never occurs in FEB"),
    ],
)
def test_impossible_day_and_month_is_refused(expression: str, message: str) -> None:
    with pytest.raises(RecurrenceError) as caught:
        parse(expression)
    assert str(caught.value) == message


def test_impossible_day_of_month_is_fine_when_day_of_week_may_match_instead() -> None:
    parse("0 0 30 2 MON")  # either rule: every Monday in February


def test_leap_day_is_possible() -> None:
    parse("0 0 29 2 *")


def test_sunday_by_name_may_end_a_weekday_range() -> None:
    assert parse("0 0 * * FRI-SUN").days_of_week == {5, 6, 0}


def test_sunday_to_sunday_by_name_is_just_sunday() -> None:
    assert parse("0 0 * * SUN-SUN").days_of_week == {0}
