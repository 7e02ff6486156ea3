"""Properties of Queue and rateLimit over random histories, against real PostgreSQL and Redis.

Hypothesis draws a history of ticks at random times (some by a replica whose broker send
fails, as a Beat dying between its commit and its publish would leave things), of runs
finishing or failing, and checks after every step: under Queue never two unfinished runs of
the schedule and messages in planned order; under a rate limit never more than the budget
sent in any window; under both, no occurrence lost (each is planned once, none skipped or
missed, and once time moves on far enough every one was sent exactly once).
"""

from __future__ import annotations

import contextlib
import itertools
from datetime import datetime, timedelta
from typing import Any

import pytest
from beatkeeper_worker.tick import Ticker
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, text
from test_planning import T0, Beat, BrokenPublisher, beat

from beatkeeper.states import RunState
from beatkeeper.store import transition
from beatkeeper.store.models import rate_sends

__all__ = ["beat"]  # the fixture, used by name

S = RunState
pytestmark = pytest.mark.slow
UNFINISHED = {S.ENQUEUED, S.RUNNING, S.RETRYING}
PROPERTIES = settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

steps = st.lists(
    st.one_of(
        st.tuples(st.just("tick"), st.integers(1, 150)),
        st.tuples(st.just("crashed tick"), st.integers(1, 150)),
        st.tuples(st.just("finish"), st.sampled_from([S.SUCCEEDED, S.FAILED])),
    ),
    min_size=5,
    max_size=30,
)


def reset(beat: Beat) -> None:
    with beat.engine.begin() as db:
        db.execute(text("DELETE FROM schedules; DELETE FROM rate_sends; DELETE FROM rate_budgets"))
    keys = beat.keys()
    beat.broker.delete(*keys)


def crashed_tick(beat: Beat, now: datetime) -> None:
    """A replica that commits its plans and dies before its messages leave."""
    beat.clock.now = now
    ticker = Ticker(beat.engine, beat.app, BrokenPublisher(beat.app), clock=beat.clock)
    with contextlib.suppress(ConnectionError):
        ticker.tick()
    ticker.close()


def finish_one(beat: Beat, state: RunState, now: datetime) -> None:
    """A worker ends the oldest run it holds, if any."""
    started = [r for r in beat.runs() if r.state == S.ENQUEUED]
    if not started:
        return
    with beat.engine.begin() as db:
        transition(db, started[0].id, S.RUNNING, now=now)
        transition(db, started[0].id, state, now=now)


def play(beat: Beat, history: list[tuple[str, Any]], check: Any) -> datetime:
    now = T0
    for action, value in history:
        if action == "finish":
            finish_one(beat, value, now)
        else:
            now += timedelta(seconds=value)
            if action == "tick":
                beat.tick_at(now)
            else:
                crashed_tick(beat, now)
        check()
    return now


def sent_planned_times(beat: Beat) -> list[str]:
    return [m["headers"]["beatkeeper_planned_at"] for m in beat.messages()]


@PROPERTIES
@given(history=steps)
def test_queue_never_overlaps_keeps_order_and_loses_nothing(
    beat: Beat, history: list[tuple[str, Any]]
) -> None:
    reset(beat)
    schedule_id = beat.apply(
        "queued", T0, interval="1m", concurrencyPolicy="Queue", missedRuns="RunAll"
    )

    def check() -> None:
        states = beat.states(schedule_id)
        assert sum(1 for state in states if state in UNFINISHED) <= 1
        assert S.SKIPPED not in states
        assert S.MISSED not in states
        sent = sent_planned_times(beat)
        assert sent == sorted(sent)
        assert len(sent) == len(set(sent))

    now = play(beat, history, check)
    for _ in range(200):  # drain: workers finish, Beat sends the next, time stands still
        finish_one(beat, S.SUCCEEDED, now)
        beat.tick_at(now)
        check()
        if all(state not in UNFINISHED | {S.PLANNED} for state in beat.states(schedule_id)):
            break
    planned = [run.planned_at for run in beat.runs(schedule_id)]
    assert planned == [T0 + timedelta(minutes=n) for n in range(1, len(planned) + 1)]
    assert len(sent_planned_times(beat)) == len(planned)  # every occurrence sent once


@PROPERTIES
@given(
    history=steps,
    budget=st.integers(1, 3),
    per=st.integers(30, 180),
    intervals=st.lists(st.integers(20, 90), min_size=3, max_size=3),
)
def test_a_rate_limit_is_never_exceeded_and_loses_nothing(
    beat: Beat, history: list[tuple[str, Any]], budget: int, per: int, intervals: list[int]
) -> None:
    reset(beat)
    limit = {"key": "shared", "runs": budget, "per": f"{per}s"}
    ids = [
        beat.apply(f"post-{n}", T0, interval=f"{every}s", rateLimit=limit, missedRuns="RunAll")
        for n, every in enumerate(intervals)
    ]
    window = timedelta(seconds=per)

    def check() -> None:
        with beat.engine.connect() as db:
            sent = sorted(db.execute(select(rate_sends.c.sent_at)).scalars())
        for moment in sent:
            assert sum(1 for other in sent if moment - window < other <= moment) <= budget
        for schedule_id in ids:
            states = beat.states(schedule_id)
            assert S.SKIPPED not in states
            assert S.MISSED not in states
        ids_sent = [m["headers"]["id"] for m in beat.messages()]
        assert len(ids_sent) == len(set(ids_sent)) == len(sent)

    now = play(beat, history, check)
    with beat.engine.begin() as db:  # stop new occurrences, then let the backlog drain
        db.execute(text("UPDATE schedules SET suspended = true"))
    for _ in itertools.count():
        held = [r for r in beat.runs() if r.state == S.PLANNED]
        if not held:
            break
        now += window
        beat.tick_at(now)
        check()
    every = beat.runs()
    assert len(sent_planned_times(beat)) == len(every)  # every occurrence sent once
    for schedule_id, interval in zip(ids, intervals, strict=True):
        planned = [run.planned_at for run in beat.runs(schedule_id)]
        step = timedelta(seconds=interval)
        assert planned == [T0 + step * n for n in range(1, len(planned) + 1)]
