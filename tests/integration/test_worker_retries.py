"""Retries wait in PostgreSQL, the last failure dead-letters, repeated failures pause."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import Engine
from test_worker_support import Beat, Worker, running_worker

from beatkeeper.retry import backoff_ceiling
from beatkeeper.settings import Settings
from beatkeeper.spec import Backoff
from beatkeeper.states import RunState

S = RunState
BACKOFF = {"initial": "1s", "max": "2s", "multiplier": 2.0}


@pytest.fixture(scope="module")
def worker(
    tmp_path_factory: pytest.TempPathFactory, settings_with_broker: Settings, engine: Engine
) -> Iterator[Worker]:
    del engine  # migrated before the worker connects
    with running_worker(tmp_path_factory.mktemp("retries"), settings_with_broker) as started:
        yield started


@pytest.fixture
def beat(db: Engine, broker_url: str) -> Beat:
    return Beat.connect(db, broker_url)


def test_failed_attempts_wait_in_the_database_then_the_last_one_is_dead(
    beat: Beat, worker: Worker
) -> None:
    schedule = beat.schedule("flaky", "userapp.fail", retry={"maxAttempts": 3, "backoff": BACKOFF})
    run_id = beat.plan(schedule, max_attempts=3)
    beat.publish(schedule, run_id, worker, "attempt failed")
    backoff = Backoff.model_validate(BACKOFF)
    for failed_attempt in (1, 2):
        run = beat.wait_for_state(run_id, S.RETRYING)
        assert run.attempt == failed_attempt + 1
        assert run.error == "RuntimeError: attempt failed"
        # due_at = the failure's time + uniform(0, min(max, initial * multiplier**(n-1)))
        waited = run.due_at - run.finished_at
        assert timedelta(0) <= waited <= backoff_ceiling(backoff, failed_attempt)
        beat.republish_when_due(schedule, run_id, worker, "attempt failed")
    run = beat.wait_for_state(run_id, S.DEAD)
    assert run.attempt == 3
    assert run.error == "RuntimeError: attempt failed"
    assert len(worker.bodies(run_id)) == 3
    worker.wait_for_log(rf"run {run_id} of tests/flaky is dead: all 3 attempts failed")
    assert beat.schedule_row(schedule).consecutive_failures == 1


def test_retry_that_succeeds_ends_succeeded_on_the_same_run(beat: Beat, worker: Worker) -> None:
    schedule = beat.schedule(
        "recovers", "userapp.maybe_fail", retry={"maxAttempts": 2, "backoff": BACKOFF}
    )
    run_id = beat.plan(schedule, max_attempts=2)
    beat.publish(schedule, run_id, worker, True)
    beat.wait_for_state(run_id, S.RETRYING)
    beat.republish_when_due(schedule, run_id, worker, False)
    run = beat.wait_for_state(run_id, S.SUCCEEDED)
    assert (run.attempt, run.result) == (2, "'fine'")
    assert beat.schedule_row(schedule).consecutive_failures == 0


def test_pause_after_consecutive_failures_and_success_resets_the_count(
    beat: Beat, worker: Worker
) -> None:
    schedule = beat.schedule("fragile", "userapp.maybe_fail", pauseAfterFailures=2)

    def one_run(*, fail: bool) -> None:
        run_id = beat.plan(schedule)
        beat.publish(schedule, run_id, worker, fail)
        beat.wait_for_state(run_id, S.FAILED if fail else S.SUCCEEDED)

    one_run(fail=True)
    assert beat.schedule_row(schedule).consecutive_failures == 1
    one_run(fail=False)
    assert beat.schedule_row(schedule).consecutive_failures == 0
    one_run(fail=True)
    assert not beat.schedule_row(schedule).suspended
    one_run(fail=True)
    row = beat.schedule_row(schedule)
    assert row.suspended
    assert row.consecutive_failures == 2
    assert row.paused_reason == ("paused after 2 consecutive failed runs (pauseAfterFailures: 2)")


def test_dead_runs_count_towards_pause_after_failures(beat: Beat, worker: Worker) -> None:
    schedule = beat.schedule(
        "doomed",
        "userapp.fail",
        pauseAfterFailures=1,
        retry={"maxAttempts": 2, "backoff": BACKOFF},
    )
    run_id = beat.plan(schedule, max_attempts=2)
    beat.publish(schedule, run_id, worker)
    beat.wait_for_state(run_id, S.RETRYING)
    assert not beat.schedule_row(schedule).suspended  # a retried attempt is not a failed run
    beat.republish_when_due(schedule, run_id, worker)
    beat.wait_for_state(run_id, S.DEAD)
    assert beat.schedule_row(schedule).suspended
