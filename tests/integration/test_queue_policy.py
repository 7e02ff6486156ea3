"""concurrencyPolicy: Queue in Beat's tick, against real PostgreSQL and Redis, with a clock.

Every occurrence becomes a planned run; a run is published only when no other run of its
schedule is unfinished or planned before it, so runs go one at a time, in planned order, and
a waiting run waits in PostgreSQL (never in the broker).
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml
from beatkeeper_worker import brokers
from beatkeeper_worker.tick import Ticker
from test_planning import MINUTE, T0, Beat, beat, settled

from beatkeeper.spec import validate_manifest
from beatkeeper.states import RunState
from beatkeeper.store import notifications, planning, transition
from beatkeeper.store.models import runs
from beatkeeper.store.schedules import apply_schedule

__all__ = ["beat"]  # the fixture, used by name

S = RunState


def finish(beat: Beat, run_id: object, state: RunState = S.SUCCEEDED) -> None:
    with beat.engine.begin() as db:
        transition(db, run_id, S.RUNNING, now=T0)  # type: ignore[arg-type]
        transition(db, run_id, state, now=T0)  # type: ignore[arg-type]


def sent_ids(beat: Beat) -> list[str]:
    return [m["headers"]["id"] for m in beat.messages()]


def test_a_queued_occurrence_waits_in_postgres_until_the_active_run_finishes(beat: Beat) -> None:
    schedule_id = beat.apply("report", T0, concurrencyPolicy="Queue")
    beat.tick_at(T0 + MINUTE)
    beat.tick_at(T0 + 2 * MINUTE)  # the first run is still enqueued
    assert beat.states(schedule_id) == [S.ENQUEUED, S.PLANNED]
    assert len(beat.messages()) == 1  # the waiting one is not in the broker (invariant 4)
    first, second = beat.runs(schedule_id)
    finish(beat, first.id)
    beat.tick_at(T0 + 2 * MINUTE + timedelta(seconds=1))
    assert beat.states(schedule_id) == [S.SUCCEEDED, S.ENQUEUED]
    assert sent_ids(beat) == [str(first.id), str(second.id)]


def test_queue_with_run_all_plans_every_missed_occurrence_and_sends_them_in_order(
    beat: Beat,
) -> None:
    schedule_id = beat.apply("report", T0, concurrencyPolicy="Queue", missedRuns="RunAll")
    beat.tick_at(T0 + 4 * MINUTE + timedelta(seconds=1))  # down for 4 occurrences
    assert beat.states(schedule_id) == [S.ENQUEUED, S.PLANNED, S.PLANNED, S.PLANNED]
    order = []
    for _ in range(4):
        [active] = [r for r in beat.runs(schedule_id) if r.state == S.ENQUEUED]
        order.append(active.planned_at)
        finish(beat, active.id)
        beat.tick_at(T0 + 5 * MINUTE - timedelta(seconds=1))
    assert order == [T0 + n * MINUTE for n in range(1, 5)]
    assert beat.states(schedule_id) == [S.SUCCEEDED] * 4
    assert len(beat.messages()) == 4


def test_a_failed_run_with_attempts_left_keeps_the_queue_waiting(beat: Beat) -> None:
    schedule_id = beat.apply("report", T0, concurrencyPolicy="Queue", retry={"maxAttempts": 2})
    beat.tick_at(T0 + MINUTE)
    [first] = beat.runs(schedule_id)
    retry_at = T0 + 2 * MINUTE + timedelta(seconds=30)
    with beat.engine.begin() as db:
        transition(db, first.id, S.RUNNING, now=T0)
        transition(db, first.id, S.FAILED, now=T0)
        transition(db, first.id, S.RETRYING, now=T0, due_at=retry_at, attempt=runs.c.attempt + 1)
    beat.tick_at(T0 + 2 * MINUTE)
    assert beat.states(schedule_id) == [S.RETRYING, S.PLANNED]
    beat.tick_at(retry_at)
    assert beat.states(schedule_id) == [S.ENQUEUED, S.PLANNED]  # the retry goes first
    finish(beat, first.id)
    beat.tick_at(retry_at)
    assert beat.states(schedule_id) == [S.SUCCEEDED, S.ENQUEUED]


def test_a_waiting_run_past_its_starting_deadline_is_missed_and_the_next_goes(
    beat: Beat,
) -> None:
    schedule_id = beat.apply(
        "report", T0, concurrencyPolicy="Queue", startingDeadline="90s", interval="1m"
    )
    beat.tick_at(T0 + MINUTE)
    beat.tick_at(T0 + 2 * MINUTE)
    beat.tick_at(T0 + 3 * MINUTE)
    first = beat.runs(schedule_id)[0]
    finish(beat, first.id)
    beat.tick_at(T0 + 3 * MINUTE + timedelta(seconds=40))  # the second waited 100s
    assert beat.states(schedule_id) == [S.SUCCEEDED, S.MISSED, S.ENQUEUED]


def test_next_wake_passes_over_a_run_waiting_its_turn(beat: Beat) -> None:
    beat.apply("report", T0, concurrencyPolicy="Queue", interval="10m")
    beat.tick_at(T0 + 10 * MINUTE)
    beat.tick_at(T0 + 20 * MINUTE)  # the second run waits behind the first
    with beat.engine.connect() as db:
        assert planning.next_wake(db, now=T0 + 20 * MINUTE) == T0 + 30 * MINUTE
        due = planning.count_due_runs(db, now=T0 + 20 * MINUTE)
    assert (due.ready, due.queued, due.rate_limited) == (0, 1, 0)


def test_the_end_of_a_queued_run_wakes_beat(beat: Beat) -> None:
    schedule_id = beat.apply("report", T0, concurrencyPolicy="Queue")
    beat.tick_at(T0 + MINUTE)
    [run] = beat.runs(schedule_id)
    with beat.engine.connect() as listener:
        channel = notifications.channel_for(_schema(beat))
        listener.exec_driver_sql(f'LISTEN "{channel}"')
        listener.commit()
        finish(beat, run.id)
        raw = listener.connection.driver_connection
        assert raw is not None
        notices = list(raw.notifies(timeout=5, stop_after=1))
    assert [n.channel for n in notices] == [channel]


def _schema(beat: Beat) -> str:
    with beat.engine.connect() as db:
        return str(db.exec_driver_sql("SELECT current_schema()").scalar_one())


def test_two_replicas_ticking_at_once_never_send_two_runs_of_a_queue(beat: Beat) -> None:
    schedule_id = beat.apply("report", T0, concurrencyPolicy="Queue", missedRuns="RunAll")
    now = T0 + 30 * MINUTE + timedelta(seconds=1)
    beat.clock.now = now
    errors: list[BaseException] = []

    def replica() -> None:
        try:
            for _ in range(5):
                settled(Ticker(beat.engine, beat.app, brokers.for_app(beat.app), clock=lambda: now))
        except BaseException as error:
            errors.append(error)

    for _ in range(30):
        threads = [threading.Thread(target=replica) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        active = [r for r in beat.runs(schedule_id) if r.state == S.ENQUEUED]
        assert len(active) == 1
        finish(beat, active[0].id)
    assert errors == []
    done = beat.runs(schedule_id)
    assert [r.state for r in done] == [S.SUCCEEDED] * 30
    assert sent_ids(beat) == [str(r.id) for r in done]  # in planned order, once each


def test_the_credits_example_allocates_every_month_missed_by_a_long_downtime_once(
    beat: Beat,
) -> None:
    """Beat down from mid-January to April: February, March and April are each sent once,
    one after the other, oldest first (Forbid used to record March and April skipped)."""
    manifests = Path(__file__).parents[2] / "manifests/examples/credits.yaml"
    [document] = [
        d
        for d in yaml.safe_load_all(manifests.read_text())
        if d["metadata"]["name"] == "credits-allocate-monthly"
    ]
    document["spec"]["queue"] = beat.queue
    created = datetime(2026, 1, 15, 12, tzinfo=UTC)
    manifest = validate_manifest(document, now=created).manifest
    with beat.engine.begin() as db:
        schedule_id = apply_schedule(db, manifest, now=created).id
    back = datetime(2026, 4, 2, 8, tzinfo=UTC)
    beat.tick_at(back)
    months = [datetime(2026, month, 1, tzinfo=UTC) for month in (2, 3, 4)]
    assert [r.planned_at for r in beat.runs(schedule_id)] == months
    for sent in range(1, 4):
        assert len(beat.messages()) == sent  # the next waits until this one finished
        [active] = [r for r in beat.runs(schedule_id) if r.state == S.ENQUEUED]
        finish(beat, active.id)
        back += MINUTE
        beat.tick_at(back)
    planned = [m["headers"]["beatkeeper_planned_at"] for m in beat.messages()]
    assert planned == [month.isoformat() for month in months]
    assert beat.states(schedule_id) == [S.SUCCEEDED] * 3
