"""Every rule is answered or refused within a bounded amount of work, however it is written."""

from __future__ import annotations

import sys
import time
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from dateutil import rrule as du

from beatkeeper.recurrence import RecurrenceError, RRuleTrigger
from beatkeeper.recurrence.budget import TooCostlyError, within

UTC_ZONE = ZoneInfo("UTC")
DTSTART = datetime(2026, 1, 1, 9, 0)


def cpu_seconds_to_build(rule: str) -> tuple[float, str]:
    started = time.process_time()
    try:
        RRuleTrigger(rule, DTSTART, UTC_ZONE)
    except RecurrenceError as error:
        return time.process_time() - started, str(error)
    return time.process_time() - started, "accepted"


@pytest.mark.parametrize(
    ("rule", "answer"),
    [
        # dateutil walks every period up to year 9999 for these (seconds to hours).
        ("FREQ=HOURLY;BYSETPOS=2", "never fires"),
        ("FREQ=MINUTELY;BYSETPOS=366;BYSECOND=1", "never fires"),
        ("FREQ=SECONDLY;BYSETPOS=366;BYSECOND=1", "never fires"),
        ("FREQ=MONTHLY;BYSETPOS=40;BYDAY=MO", "never fires"),
        ("FREQ=YEARLY;BYSETPOS=-60;BYMONTH=2;BYDAY=MO", "never fires"),
        ("FREQ=MINUTELY;BYMONTH=4;BYMONTHDAY=31", "never fires"),
        # dateutil steps second by second up to 05:00 of every day it skips.
        ("FREQ=SECONDLY;BYHOUR=5;BYMONTH=2;BYMONTHDAY=29", "too costly"),
        ("FREQ=SECONDLY;BYHOUR=5;BYMONTH=2;BYMONTHDAY=29;BYDAY=MO", "too costly"),
    ],
)
def test_worst_known_rules_are_refused_within_a_second(rule: str, answer: str) -> None:
    seconds, outcome = cpu_seconds_to_build(rule)
    assert answer in outcome
    assert seconds < 1.0, f"{rule} took {seconds:.2f} s of CPU"


def test_refusal_names_the_rule_and_the_limit() -> None:
    _, outcome = cpu_seconds_to_build("FREQ=SECONDLY;BYHOUR=5;BYMONTH=2;BYMONTHDAY=29")
    assert outcome.startswith("rrule FREQ=SECONDLY;BYHOUR=5;BYMONTH=2;BYMONTHDAY=29: too costly")
    assert "1,000,000 steps" in outcome


@pytest.mark.parametrize(
    "rule",
    [
        "FREQ=HOURLY;BYSETPOS=1,3;BYMINUTE=0,30",  # position 3 never matches; 1 does
        "FREQ=MINUTELY;BYHOUR=3;BYSECOND=1,2,3;BYSETPOS=-2",
        "FREQ=MONTHLY;BYDAY=MO;BYSETPOS=5",  # some months have a fifth Monday
        "FREQ=SECONDLY;BYHOUR=5",  # a day's worth of seconds to step through: allowed
        "FREQ=SECONDLY;COUNT=100000",  # expanded once, within its own budget
    ],
)
def test_dense_or_satisfiable_rules_are_still_accepted(rule: str) -> None:
    seconds, outcome = cpu_seconds_to_build(rule)
    assert outcome == "accepted"
    assert seconds < 3.0


@pytest.mark.parametrize(
    ("rule", "dtstart"),
    [
        # Dense in January, then 11 months of stepping through every second up to 05:00.
        ("FREQ=SECONDLY;BYMONTH=1;BYHOUR=5;BYMINUTE=0", datetime(2026, 1, 1, 9, 0)),
        # Starts the day before a leap day: the next gap is four years of such steps.
        ("FREQ=SECONDLY;BYMONTH=2;BYMONTHDAY=29;BYHOUR=5", datetime(2028, 2, 28, 9, 0)),
    ],
)
def test_rule_with_a_costly_gap_later_on_is_refused_when_built(
    rule: str, dtstart: datetime
) -> None:
    started = time.process_time()
    with pytest.raises(TooCostlyError, match="too costly"):
        RRuleTrigger(rule, dtstart, UTC_ZONE)
    assert time.process_time() - started < 2.0


def test_rule_with_cheap_rare_gaps_is_accepted() -> None:
    trigger = RRuleTrigger("FREQ=HOURLY;BYMONTH=2;BYMONTHDAY=29;BYHOUR=5", DTSTART, UTC_ZONE)
    assert trigger.not_before.year == 2028


def test_budget_stops_a_call_and_puts_back_the_previous_profiler() -> None:
    previous = sys.getprofile()
    never = du.rrulestr("FREQ=HOURLY;BYSETPOS=2", dtstart=DTSTART)
    with pytest.raises(TooCostlyError, match="more than 1,000 steps"):
        within(lambda: never.after(DTSTART), rule="FREQ=HOURLY;BYSETPOS=2", limit=1_000)
    assert sys.getprofile() is previous
    assert within(lambda: 42, rule="x") == 42
