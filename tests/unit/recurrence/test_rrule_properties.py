"""Re-anchored RRULEs give exactly what plain dateutil gives iterating from DTSTART.

Random rules (every FREQ, INTERVAL phases, BYxxx parts, BYSETPOS, COUNT, local and UTC
UNTIL) in random zones, queried around real DST transitions, some periods after DTSTART.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from beatkeeper.recurrence import RecurrenceError, RRuleTrigger

from .reference import ZONES, examples, local_wall, occurrences_of, rrule_occurrences, transitions

WEEKDAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
# Per FREQ: how far DTSTART may lie before the query, and how long a window to compare.
SCALES = {
    "SECONDLY": (timedelta(seconds=1), 3_000, timedelta(minutes=10)),
    "MINUTELY": (timedelta(minutes=1), 3_000, timedelta(hours=8)),
    "HOURLY": (timedelta(hours=1), 2_000, timedelta(days=3)),
    "DAILY": (timedelta(days=1), 600, timedelta(days=12)),
    "WEEKLY": (timedelta(weeks=1), 150, timedelta(weeks=6)),
    "MONTHLY": (timedelta(days=30), 60, timedelta(days=120)),
    "YEARLY": (timedelta(days=365), 12, timedelta(days=3 * 365)),
}
COARSE = ("DAILY", "WEEKLY", "MONTHLY", "YEARLY")


def numbers(low: int, high: int, *, signed: bool = False, size: int = 3) -> st.SearchStrategy[str]:
    value = st.integers(low, high)
    if signed:
        value = value | st.integers(-high, -low)
    return st.lists(value, min_size=1, max_size=size, unique=True).map(
        lambda v: ",".join(map(str, v))
    )


@st.composite
def by_day(draw: st.DrawFn, freq: str) -> str:
    days = draw(st.lists(st.sampled_from(WEEKDAYS), min_size=1, max_size=3, unique=True))
    if freq in ("MONTHLY", "YEARLY") and draw(st.booleans()):
        return ",".join(f"{draw(st.sampled_from([1, 2, -1, -2, 4]))}{day}" for day in days)
    return ",".join(days)


@st.composite
def rule_text(draw: st.DrawFn) -> tuple[str, str]:
    freq = draw(st.sampled_from(list(SCALES)))
    parts = [f"FREQ={freq}"]
    if draw(st.booleans()):
        parts.append(f"INTERVAL={draw(st.integers(2, 5))}")
    # dateutil crawls through SECONDLY rules day by day (~1 ms a day), so keep those dense.
    days = 0.0 if freq == "SECONDLY" else 1.0
    if draw(st.floats(0, 1)) < 0.3 * days:
        parts.append(f"BYMONTH={draw(numbers(1, 12))}")
    if draw(st.floats(0, 1)) < 0.3 * days:
        parts.append(f"BYMONTHDAY={draw(numbers(1, 31, signed=True))}")
    if draw(st.floats(0, 1)) < 0.4 * days:
        parts.append(f"BYDAY={draw(by_day(freq))}")
    if freq == "YEARLY" and draw(st.floats(0, 1)) < 0.15:
        parts.append(f"BYWEEKNO={draw(numbers(1, 53, signed=True, size=2))}")
    if freq in ("YEARLY", "MONTHLY", "DAILY") and draw(st.floats(0, 1)) < 0.1:
        parts.append(f"BYYEARDAY={draw(numbers(1, 366, signed=True, size=2))}")
    if draw(st.floats(0, 1)) < 0.4:
        parts.append(f"BYHOUR={draw(numbers(0, 23))}")
    if draw(st.floats(0, 1)) < 0.4:
        parts.append(f"BYMINUTE={draw(numbers(0, 59))}")
    if freq != "SECONDLY" and draw(st.floats(0, 1)) < 0.2:
        parts.append(f"BYSECOND={draw(numbers(0, 59, size=2))}")
    if freq in COARSE and draw(st.floats(0, 1)) < 0.25:
        # A DAILY set is one day: a position beyond it would never fire (slow to prove).
        most = 1 if freq == "DAILY" else 3
        parts.append(f"BYSETPOS={draw(numbers(1, most, signed=True, size=2))}")
    if draw(st.floats(0, 1)) < 0.2:
        parts.append(f"WKST={draw(st.sampled_from(WEEKDAYS))}")
    if draw(st.floats(0, 1)) < 0.15:
        parts.append(f"COUNT={draw(st.integers(1, 400))}")
    draw(st.permutations(parts))
    return freq, ";".join(parts)


@st.composite
def query(draw: st.DrawFn, freq: str) -> tuple[ZoneInfo, datetime, datetime]:
    """A zone, DTSTART (naive local) some periods earlier, and an instant near a transition."""
    name = draw(st.sampled_from(ZONES))
    changes = transitions(name)
    if changes:
        base = draw(st.sampled_from(changes))
    else:
        base = datetime(2005, 1, 1, tzinfo=UTC) + timedelta(days=draw(st.integers(0, 9000)))
    after = base + timedelta(seconds=draw(st.integers(-30 * 3600, 30 * 3600)))
    unit, most, _ = SCALES[freq]
    back = unit * draw(st.integers(0, most)) + timedelta(seconds=draw(st.integers(0, 86_399)))
    dtstart = (local_wall(after, ZoneInfo(name)) - back).replace(microsecond=0)
    return ZoneInfo(name), dtstart, after


def build(text: str, dtstart: datetime, zone: ZoneInfo) -> RRuleTrigger:
    """The trigger, or skip the example if it never fires or costs too much to compute.

    Plain dateutil would search until year 9999 to confirm either, so those rules are
    checked by the unit tests instead.
    """
    try:
        return RRuleTrigger(text, dtstart, zone)
    except RecurrenceError as error:
        refusal = str(error)
    assert refusal.startswith("never fires") or "too costly" in refusal, refusal
    assume(False)
    raise AssertionError  # not reached: assume(False) stops the example


@settings(
    max_examples=examples(200),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(data=st.data())
def test_reanchored_rule_agrees_with_plain_dateutil_from_dtstart(data: st.DataObject) -> None:
    freq, text = data.draw(rule_text())
    zone, dtstart, after = data.draw(query(freq))
    until = after + SCALES[freq][2]
    trigger = build(text, dtstart, zone)
    expected = rrule_occurrences(text, dtstart, zone, after, until)
    assert occurrences_of(trigger, after, until) == expected


@settings(
    max_examples=examples(60),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(data=st.data(), zulu=st.booleans())
def test_until_bounds_the_rule_in_utc_or_local_time(data: st.DataObject, zulu: bool) -> None:
    freq, text = data.draw(rule_text())
    assume("COUNT" not in text)
    zone, dtstart, after = data.draw(query(freq))
    until = after + SCALES[freq][2]
    bound = after + (until - after) * data.draw(st.floats(0, 1))
    if zulu:
        stamp = bound.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
        limited, reference_text = f"{text};UNTIL={stamp}", text
        not_after: datetime | None = bound.replace(microsecond=0)
    else:
        stamp = local_wall(bound, zone).strftime("%Y%m%dT%H%M%S")
        limited = reference_text = f"{text};UNTIL={stamp}"
        not_after = None
    trigger = build(limited, dtstart, zone)
    expected = rrule_occurrences(reference_text, dtstart, zone, after, until, not_after=not_after)
    assert occurrences_of(trigger, after, until) == expected


@settings(
    max_examples=examples(60),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(data=st.data(), seed=st.integers(0, 2**32))
def test_every_query_point_gets_the_plain_dateutil_answer(data: st.DataObject, seed: int) -> None:
    freq, text = data.draw(rule_text())
    zone, dtstart, after = data.draw(query(freq))
    until = after + SCALES[freq][2]
    trigger = build(text, dtstart, zone)
    expected = rrule_occurrences(text, dtstart, zone, after, until)
    pick = random.Random(seed)
    for _ in range(10):
        moment = after + (until - after) * pick.random() * 0.8
        following = [t for t in expected if t > moment]
        if following:
            assert trigger.next_after(moment) == following[0]
