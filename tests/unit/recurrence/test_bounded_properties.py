"""Recurrence agrees with filtering a trigger's raw occurrences by hand."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from beatkeeper.recurrence import (
    AtTrigger,
    CronTrigger,
    IntervalTrigger,
    Recurrence,
    RRuleTrigger,
    Trigger,
)

from .reference import ZONES, examples, occurrences_of

BASE = datetime(2024, 2, 20, tzinfo=UTC)
WINDOW = timedelta(days=45)


@st.composite
def triggers(draw: st.DrawFn, zone: ZoneInfo) -> Trigger:
    kind = draw(st.sampled_from(["cron", "interval", "rrule", "at"]))
    moment = BASE + timedelta(minutes=draw(st.integers(-20_000, 20_000)))
    if kind == "cron":
        return CronTrigger(
            draw(st.sampled_from(["*/30 * * * *", "0 9 * * 1-5", "0 0 1 * *", "15 2 * * *"])), zone
        )
    if kind == "interval":
        return IntervalTrigger(timedelta(minutes=draw(st.integers(7, 3000))), moment)
    if kind == "rrule":
        rule = draw(
            st.sampled_from(
                [
                    "FREQ=DAILY;BYHOUR=9,21",
                    "FREQ=WEEKLY;BYDAY=MO,TH;COUNT=20",
                    "FREQ=HOURLY;INTERVAL=5",
                ]
            )
        )
        return RRuleTrigger(rule, moment.astimezone(zone).replace(tzinfo=None), zone)
    return AtTrigger(moment)


@st.composite
def recurrences(draw: st.DrawFn) -> Recurrence:
    zone = ZoneInfo(draw(st.sampled_from(ZONES)))
    trigger = draw(triggers(zone))
    offsets = st.integers(-30 * 24 * 60, 30 * 24 * 60).map(lambda m: BASE + timedelta(minutes=m))
    start = draw(st.none() | offsets)
    if start is None and isinstance(trigger, CronTrigger):
        start = BASE - timedelta(days=20)
    end = draw(st.none() | offsets)
    days = st.integers(-30, 60).map(lambda d: BASE.date() + timedelta(days=d))
    return Recurrence(
        trigger,
        zone,
        start=start,
        end=end,
        max_runs=draw(st.none() | st.integers(0, 40)),
        exclude_dates=draw(st.frozensets(days, max_size=12)),
        exclude_months=draw(st.frozensets(st.integers(1, 12), max_size=3)),
        jitter=draw(st.none() | st.timedeltas(timedelta(0), timedelta(hours=2))),
        seed=draw(st.text(max_size=8)),
    )


def expected_occurrences(recurrence: Recurrence, until: datetime) -> list[datetime]:
    """Filter the trigger's raw occurrences: bounds, exclusions, then the first max_runs."""
    origin = recurrence.start or getattr(
        recurrence.trigger, "not_before", BASE - timedelta(days=60)
    )
    raw = occurrences_of(recurrence.trigger, origin - timedelta(microseconds=1), until)
    allowed = [
        moment
        for moment in raw
        if (recurrence.end is None or moment <= recurrence.end)
        and moment.astimezone(recurrence.zone).date() not in recurrence.exclude_dates
        and moment.astimezone(recurrence.zone).month not in recurrence.exclude_months
    ]
    return allowed if recurrence.max_runs is None else allowed[: recurrence.max_runs]


@settings(max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(recurrence=recurrences(), shift=st.integers(-40 * 24 * 60, 40 * 24 * 60))
def test_recurrence_agrees_with_filtering_by_hand(recurrence: Recurrence, shift: int) -> None:
    after = BASE + timedelta(minutes=shift)
    until = BASE + WINDOW
    expected = [moment for moment in expected_occurrences(recurrence, until) if moment > after]
    found = [
        moment for moment in recurrence.occurrences(after, len(expected) + 1) if moment <= until
    ]
    assert found == expected


@settings(max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(recurrence=recurrences(), shift=st.integers(-40 * 24 * 60, 40 * 24 * 60))
def test_occurrences_increase_and_respect_every_bound(recurrence: Recurrence, shift: int) -> None:
    after = BASE + timedelta(minutes=shift)
    found = recurrence.occurrences(after, 60, planned_so_far=0)
    assert all(a < b for a, b in pairwise(found))
    assert all(moment > after and moment.tzinfo is UTC for moment in found)
    for moment in found:
        local = moment.astimezone(recurrence.zone)
        assert local.date() not in recurrence.exclude_dates
        assert local.month not in recurrence.exclude_months
        assert recurrence.start is None or moment >= recurrence.start
        assert recurrence.end is None or moment <= recurrence.end
    if recurrence.max_runs is not None:
        assert len(found) <= recurrence.max_runs
        assert len(recurrence.occurrences(after, 60)) <= recurrence.max_runs


@settings(max_examples=examples(100), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(recurrence=recurrences())
def test_first_and_last_match_the_full_list(recurrence: Recurrence) -> None:
    window_end = BASE + timedelta(days=400)
    expected = expected_occurrences(recurrence, window_end)
    assert recurrence.first() == (expected[0] if expected else None)
    ends = [recurrence.end, getattr(recurrence.trigger, "not_after", None)]
    if recurrence.max_runs is None and ends == [None, None]:
        assert recurrence.last() is None
    elif any(end is not None and end < window_end for end in ends) or (
        recurrence.max_runs is not None and len(expected) == recurrence.max_runs
    ):
        assert recurrence.last() == (expected[-1] if expected else None)


@settings(max_examples=examples(100), deadline=None)
@given(recurrence=recurrences(), minutes=st.integers(-(10**6), 10**6))
def test_jitter_is_deterministic_and_within_bounds(recurrence: Recurrence, minutes: int) -> None:
    planned = BASE + timedelta(minutes=minutes)
    delay = recurrence.jitter_for(planned)
    assert timedelta(0) <= delay <= (recurrence.jitter or timedelta(0))
    assert delay == recurrence.jitter_for(planned.astimezone(ZoneInfo("Pacific/Apia")))
    twin = Recurrence(
        recurrence.trigger, recurrence.zone, jitter=recurrence.jitter, seed=recurrence.seed
    )
    assert twin.jitter_for(planned) == delay


def test_excluded_local_dates_use_the_zone_not_utc() -> None:
    zone = ZoneInfo("Pacific/Apia")
    recurrence = Recurrence(
        CronTrigger("0 23 * * *", zone), zone, exclude_dates=frozenset({date(2024, 3, 1)})
    )
    assert all(
        m.astimezone(zone).date() != date(2024, 3, 1) for m in recurrence.occurrences(BASE, 20)
    )
