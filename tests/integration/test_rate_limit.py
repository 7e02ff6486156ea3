"""spec.rateLimit in Beat's tick, against real PostgreSQL and Redis, with a clock the test moves.

Schedules of one namespace sharing a key share one budget: at most ``runs`` sends in any
window of ``per``, across replicas; a held-back run waits as a planned run, in order, and is
never skipped because of the limit.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

from beatkeeper_operator.status import load_observations, run_fields
from beatkeeper_worker import brokers
from beatkeeper_worker.tick import Ticker
from sqlalchemy import select
from test_planning import MINUTE, T0, Beat, beat, settled

from beatkeeper.states import RunState
from beatkeeper.store import planning, transition
from beatkeeper.store.models import rate_sends

__all__ = ["beat"]  # the fixture, used by name

S = RunState
LIMIT = {"key": "instagram", "runs": 2, "per": "1m"}


def sent_at(beat: Beat) -> list[datetime]:
    """When each run was sent under a rate limit, by the clock Beat had."""
    with beat.engine.connect() as db:
        return sorted(db.execute(select(rate_sends.c.sent_at)).scalars())


def at_most(times: list[datetime], runs: int, per: timedelta) -> bool:
    """No window of length ``per`` holds more than ``runs`` of ``times``."""
    return all(
        sum(1 for other in times if moment - per < other <= moment) <= runs for moment in times
    )


def test_schedules_sharing_a_key_share_one_budget(beat: Beat) -> None:
    ids = [beat.apply(f"post-{n}", T0, rateLimit=LIMIT) for n in range(3)]
    report = beat.tick_at(T0 + MINUTE)
    assert (report.planned, report.published) == (3, 2)
    states = sorted(state for schedule_id in ids for state in beat.states(schedule_id))
    assert states == [S.ENQUEUED, S.ENQUEUED, S.PLANNED]  # the third waits in PostgreSQL
    assert len(beat.messages()) == 2
    with beat.engine.connect() as db:
        due = planning.count_due_runs(db, now=T0 + MINUTE)
        assert (due.ready, due.rate_limited) == (0, 1)
        # It goes when the first send leaves the window, not before.
        assert planning.next_wake(db, now=T0 + MINUTE) == T0 + 2 * MINUTE
    assert beat.tick_at(T0 + 2 * MINUTE - timedelta(milliseconds=1)).published == 0


def test_a_held_back_run_goes_when_the_window_has_room_and_none_is_lost(beat: Beat) -> None:
    ids = [beat.apply(f"post-{n}", T0, rateLimit=LIMIT, maxRuns=10) for n in range(3)]
    now = T0
    while now < T0 + 20 * MINUTE:  # 30 runs at 2 a minute: 15 minutes
        now += timedelta(seconds=20)
        beat.tick_at(now)
        runs = [run for schedule_id in ids for run in beat.runs(schedule_id)]
        held = [run for run in runs if run.state == S.PLANNED]
        sent = [run for run in runs if run.state == S.ENQUEUED]
        # In order: no run waits that came due before one that was sent.
        assert max((r.due_at for r in sent), default=T0) <= min(
            (r.due_at for r in held), default=now
        )
    assert [run.state for run in runs] == [S.ENQUEUED] * 30
    assert len(beat.messages()) == 30
    assert at_most(sent_at(beat), 2, MINUTE)


def test_other_namespaces_and_keys_have_budgets_of_their_own(beat: Beat) -> None:
    beat.apply("post-a", T0, rateLimit=LIMIT)
    beat.apply("post-b", T0, rateLimit=LIMIT)
    beat.apply("post-c", T0, rateLimit={**LIMIT, "key": "mastodon"})
    beat.apply("post-d", T0)
    assert beat.tick_at(T0 + MINUTE).published == 4


def test_starting_deadline_still_applies_and_says_the_limit_was_why(beat: Beat) -> None:
    limit = {**LIMIT, "runs": 1, "per": "5m"}
    # Both due at once: which one the budget lets through is not specified, so both have
    # the deadline that the one held back must miss.
    first = beat.apply("post-a", T0, rateLimit=limit, interval="10m", startingDeadline="2m")
    second = beat.apply("post-b", T0, rateLimit=limit, interval="10m", startingDeadline="2m")
    beat.tick_at(T0 + 10 * MINUTE)
    assert beat.states(first) + beat.states(second) in (
        [S.ENQUEUED, S.PLANNED],
        [S.PLANNED, S.ENQUEUED],
    )
    beat.tick_at(T0 + 15 * MINUTE + timedelta(seconds=1))  # room again, but 5m late
    [late] = [run for run in beat.runs() if run.state != S.ENQUEUED]
    assert late.state == S.MISSED
    assert late.error == (
        "could not start within startingDeadline: it waited for rateLimit 'instagram'"
    )


def test_a_retry_spends_the_budget_too(beat: Beat) -> None:
    schedule_id = beat.apply("post-a", T0, rateLimit={**LIMIT, "runs": 1}, retry={"maxAttempts": 2})
    other = beat.apply("post-b", T0, rateLimit={**LIMIT, "runs": 1}, interval="10m")
    beat.tick_at(T0 + MINUTE)
    [run] = beat.runs(schedule_id)
    with beat.engine.begin() as db:
        transition(db, run.id, S.RUNNING, now=T0)
        transition(db, run.id, S.FAILED, now=T0)
        transition(db, run.id, S.RETRYING, now=T0, due_at=T0 + 2 * MINUTE)
    beat.tick_at(T0 + 2 * MINUTE + timedelta(seconds=1))
    assert beat.states(other) == []  # not due yet
    assert len(beat.messages()) == 2
    assert at_most(sent_at(beat), 1, MINUTE)


def test_two_replicas_never_overspend_a_budget(beat: Beat) -> None:
    for n in range(6):
        beat.apply(f"post-{n}", T0, rateLimit={**LIMIT, "runs": 4, "per": "10m"}, interval="1m")
    now = T0 + MINUTE
    errors: list[BaseException] = []

    def replica() -> None:
        try:
            ticker = Ticker(beat.engine, beat.app, brokers.for_app(beat.app), clock=lambda: now)
            for _ in range(3):
                settled(ticker)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=replica) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    states = sorted(run.state for run in beat.runs())
    assert states == [S.ENQUEUED] * 4 + [S.PLANNED] * 2
    assert len(beat.messages()) == 4


def test_status_says_which_runs_wait_for_their_budget(beat: Beat) -> None:
    ids = [beat.apply(f"post-{n}", T0, rateLimit={**LIMIT, "runs": 1}) for n in range(3)]
    beat.tick_at(T0 + MINUTE)
    with beat.engine.connect() as db:
        held = planning.held_runs(db, ids, now=T0 + MINUTE)
        observed = load_observations(db, ids, now=T0 + MINUTE)
    assert sorted(held.values(), key=str) == [{"rateLimit": 1}, {"rateLimit": 1}]
    waiting = [run_fields(observed[i])["held"] for i in ids]
    assert sorted(waiting, key=len) == [{}, {"rateLimit": 1}, {"rateLimit": 1}]
