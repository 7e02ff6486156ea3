"""CronTrigger agrees with a brute-force walk over every wall-clock minute.

Random expressions (lists, ranges, steps, names, 7 for Sunday, seconds) in random zones,
over windows placed around real DST transitions, including starts inside a repeated
hour and just after a gap.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from beatkeeper.recurrence import CronTrigger, RecurrenceError

from .reference import ZONES, CronSets, cron_occurrences, examples, occurrences_of, transitions

MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
Field = tuple[str, frozenset[int]]


@st.composite
def cron_item(draw: st.DrawFn, low: int, high: int, names: tuple[str, ...] | None) -> Field:
    def spell(value: int) -> str:
        if names and value - low < len(names) and draw(st.booleans()):
            name = names[value - low]
            return draw(st.sampled_from([name, name.lower(), name.title()]))
        return str(value)

    kind = draw(st.sampled_from(["value", "range", "range_step", "start_step", "star_step"]))
    first = draw(st.integers(low, high))
    last = draw(st.integers(first, high))
    step = draw(st.integers(1, max(1, (high - low) // 2)))
    if kind == "value":
        return spell(first), frozenset({first})
    if kind == "range":
        return f"{spell(first)}-{spell(last)}", frozenset(range(first, last + 1))
    if kind == "range_step":
        return f"{spell(first)}-{spell(last)}/{step}", frozenset(range(first, last + 1, step))
    if kind == "start_step":
        return f"{spell(first)}/{step}", frozenset(range(first, high + 1, step))
    return f"*/{step}", frozenset(range(low, high + 1, step))


@st.composite
def cron_field(
    draw: st.DrawFn, low: int, high: int, names: tuple[str, ...] | None = None, star: float = 0.4
) -> Field:
    if draw(st.floats(0, 1)) < star:
        return "*", frozenset(range(low, high + 1))
    items = draw(st.lists(cron_item(low, high, names), min_size=1, max_size=3))
    return ",".join(text for text, _ in items), frozenset().union(*(values for _, values in items))


@st.composite
def sparse_seconds(draw: st.DrawFn) -> Field:
    """A seconds field with a few values, so the brute force stays quick."""
    if draw(st.booleans()):
        first, step = draw(st.integers(0, 9)), draw(st.integers(10, 40))
        return f"{first}/{step}", frozenset(range(first, 60, step))
    values = draw(st.lists(st.integers(0, 59), min_size=1, max_size=3))
    return ",".join(map(str, values)), frozenset(values)


@st.composite
def cron_expression(draw: st.DrawFn) -> tuple[str, CronSets]:
    with_seconds = draw(st.booleans()) and draw(st.booleans())
    seconds = draw(sparse_seconds()) if with_seconds else ("0", frozenset({0}))
    minutes = draw(cron_field(0, 59, star=0.2))
    hours = draw(cron_field(0, 23, star=0.5))
    days = draw(cron_field(1, 31, star=0.6))
    months = draw(cron_field(1, 12, MONTHS, star=0.8))
    weekdays = draw(cron_field(0, 7, DAYS, star=0.6))
    fields = [minutes, hours, days, months, weekdays]
    if with_seconds:
        fields.insert(0, seconds)
    sets = CronSets(
        seconds=seconds[1],
        minutes=minutes[1],
        hours=hours[1],
        days_of_month=days[1],
        months=months[1],
        days_of_week=weekdays[1],
        day_of_month_restricted=not days[0].startswith("*"),
        day_of_week_restricted=not weekdays[0].startswith("*"),
    )
    return " ".join(text for text, _ in fields), sets


@st.composite
def window_start(draw: st.DrawFn) -> tuple[ZoneInfo, datetime]:
    """A zone and an instant within a day and a bit of one of its offset changes."""
    name = draw(st.sampled_from(ZONES))
    changes = transitions(name)
    if changes:
        base = draw(st.sampled_from(changes))
    else:
        base = datetime(2005, 1, 1, tzinfo=UTC) + timedelta(days=draw(st.integers(0, 9000)))
    shift = timedelta(seconds=draw(st.integers(-30 * 3600, 30 * 3600)))
    micro = timedelta(microseconds=draw(st.sampled_from([0, 0, 1, 999_999])))
    return ZoneInfo(name), base + shift + micro


@settings(max_examples=examples(250), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(expression=cron_expression(), start=window_start())
def test_cron_agrees_with_brute_force_around_transitions(
    expression: tuple[str, CronSets], start: tuple[ZoneInfo, datetime]
) -> None:
    text, sets = expression
    zone, after = start
    until = after + (timedelta(hours=6) if len(text.split()) == 6 else timedelta(days=2))
    expected = cron_occurrences(sets, zone, after, until)
    try:
        trigger = CronTrigger(text, zone)
    except RecurrenceError as error:
        refusal = str(error)
    else:
        assert occurrences_of(trigger, after, until) == expected
        return
    assert refusal.startswith("never fires")
    assert expected == []


@settings(max_examples=examples(60), deadline=None)
@given(expression=cron_expression(), start=window_start(), seed=st.integers(0, 2**32))
def test_every_query_point_in_a_window_gets_the_brute_force_answer(
    expression: tuple[str, CronSets], start: tuple[ZoneInfo, datetime], seed: int
) -> None:
    text, sets = expression
    zone, after = start
    until = after + timedelta(days=3)
    try:
        trigger = CronTrigger(text, zone)
    except RecurrenceError:
        return
    expected = cron_occurrences(sets, zone, after, until)
    pick = random.Random(seed)
    for _ in range(20):
        moment = after + timedelta(
            seconds=pick.randrange(0, 2 * 86400), microseconds=pick.choice([0, 5])
        )
        following = [t for t in expected if t > moment]
        if following and following[0] <= until:
            assert trigger.next_after(moment) == following[0]
