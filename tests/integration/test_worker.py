"""Run tracking in a real prefork worker of a user's own Celery app (``tracking.install``).

Each test plays Beat (``test_worker_support.Beat``): it inserts the run row and publishes the
message the way the contract says, then watches the run row and the task body's own log.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from beatkeeper_worker import tracking
from celery import Celery, signals
from sqlalchemy import Engine, func, select
from test_worker_support import Beat, Worker, free_port, running_worker
from waiting import wait_for

from beatkeeper.settings import Settings
from beatkeeper.states import RunState
from beatkeeper.store.models import runs
from beatkeeper.store.runs import SUMMARY_MAX_CHARS

S = RunState


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("userapp")


@pytest.fixture(scope="module")
def worker(workdir: Path, settings_with_broker: Settings, engine: Engine) -> Iterator[Worker]:
    del engine  # migrated before the worker connects
    with running_worker(workdir, settings_with_broker) as started:
        yield started


@pytest.fixture
def beat(db: Engine, broker_url: str) -> Beat:
    return Beat.connect(db, broker_url)


def test_run_goes_enqueued_running_succeeded_with_its_details(beat: Beat, worker: Worker) -> None:
    schedule = beat.schedule("adder", "userapp.add")
    run_id = beat.plan(schedule)
    beat.publish(schedule, run_id, worker, 2, 3)
    run = beat.wait_for_state(run_id, S.SUCCEEDED)
    assert run.result == "5"
    assert run.error is None
    assert run.attempt == 1
    assert run.worker.startswith(f"{worker.queue}@")
    assert len(run.worker_session) == 12
    assert run.enqueued_at <= run.started_at <= run.finished_at
    assert worker.bodies(run_id) == [run.worker_pid]


def test_shared_task_and_custom_base_class_are_tracked(beat: Beat, worker: Worker) -> None:
    schedule = beat.schedule("echo", "userapp.echo")
    shared = beat.plan(schedule)
    custom = beat.plan(schedule, task="userapp.custom_call")
    beat.publish(schedule, shared, worker, "hello")
    beat.publish(schedule, custom, worker, [1, 2])
    assert beat.wait_for_state(shared, S.SUCCEEDED).result == "'hello'"
    assert beat.wait_for_state(custom, S.SUCCEEDED).result == "[1, 2]"


def test_failure_records_type_and_message_and_is_final_without_retries(
    beat: Beat, worker: Worker
) -> None:
    schedule = beat.schedule("failing", "userapp.fail")
    run_id = beat.plan(schedule)
    beat.publish(schedule, run_id, worker, "disk full")
    run = beat.wait_for_state(run_id, S.FAILED, S.RETRYING, S.DEAD)
    assert run.state == S.FAILED
    assert run.error == "RuntimeError: disk full"
    assert run.finished_at is not None
    assert beat.schedule_row(schedule).consecutive_failures == 1


def test_result_summary_is_bounded(beat: Beat, worker: Worker) -> None:
    schedule = beat.schedule("big", "userapp.big")
    run_id = beat.plan(schedule)
    beat.publish(schedule, run_id, worker)
    run = beat.wait_for_state(run_id, S.SUCCEEDED)
    assert len(run.result) < SUMMARY_MAX_CHARS + 100


def test_duplicate_message_runs_the_body_once(beat: Beat, worker: Worker) -> None:
    schedule = beat.schedule("dup", "userapp.sleep")
    run_id = beat.plan(schedule)
    beat.publish(schedule, run_id, worker, 0.5)
    beat.publish(schedule, run_id, worker, 0.5)  # a second publish after a Beat crash
    beat.wait_for_state(run_id, S.SUCCEEDED)
    worker.wait_for_log(rf"run {run_id} of tests/dup is (running on|succeeded)")
    assert len(worker.bodies(run_id)) == 1


@pytest.mark.parametrize("state", [S.SUCCEEDED, S.FAILED, S.DEAD, S.CANCELLED, S.SKIPPED])
def test_finished_run_is_never_executed_again(beat: Beat, worker: Worker, state: RunState) -> None:
    schedule = beat.schedule("done", "userapp.add")
    run_id = beat.plan(schedule, state=state)
    beat.publish(schedule, run_id, worker, 1, 1)
    worker.wait_for_log(rf"run {run_id} of tests/done is {state}: not run again")
    assert worker.bodies(run_id) == []
    assert beat.run(run_id).state == state


def test_message_for_an_unknown_run_is_dropped(beat: Beat, worker: Worker) -> None:
    schedule = beat.schedule("ghost", "userapp.add")
    run_id = beat.plan(schedule)
    row = beat.run(run_id)
    with beat.engine.begin() as db:
        db.execute(runs.delete().where(runs.c.id == run_id))
    beat.publish(schedule, run_id, worker, 1, 1, run=row)
    worker.wait_for_log(rf"run {run_id} of tests/ghost does not exist")
    assert worker.bodies(run_id) == []


def test_unknown_task_fails_the_run_with_a_clear_error(beat: Beat, worker: Worker) -> None:
    schedule = beat.schedule("typo", "userapp.does_not_exist")
    run_id = beat.plan(schedule)
    beat.publish(schedule, run_id, worker)
    run = beat.wait_for_state(run_id, S.FAILED)
    assert run.error == (
        f"NotRegistered: no task named 'userapp.does_not_exist' on worker {worker.queue}@"
        + run.worker.split("@", 1)[1]
    )


def test_wrong_arguments_fail_the_run_with_a_clear_error(beat: Beat, worker: Worker) -> None:
    schedule = beat.schedule("args", "userapp.add")
    run_id = beat.plan(schedule)
    beat.publish(schedule, run_id, worker, 1)
    run = beat.wait_for_state(run_id, S.FAILED)
    assert run.error == "TypeError: add() missing 1 required positional argument: 'y'"


def test_hard_time_limit_fails_the_run(beat: Beat, worker: Worker) -> None:
    schedule = beat.schedule("slowpoke", "userapp.sleep")
    run_id = beat.plan(schedule)
    beat.publish(schedule, run_id, worker, 30, time_limit=1)
    run = beat.wait_for_state(run_id, S.FAILED, timeout=30)
    assert run.error.startswith("TimeLimitExceeded")


def test_celery_retry_called_by_the_task_keeps_one_run(beat: Beat, worker: Worker) -> None:
    schedule = beat.schedule("again", "userapp.retry_once")
    run_id = beat.plan(schedule)
    beat.publish(schedule, run_id, worker)
    run = beat.wait_for_state(run_id, S.SUCCEEDED)
    assert run.result == "'second time lucky'"
    assert len(worker.bodies(run_id)) == 2


def test_users_own_delay_calls_pass_through_without_the_database(
    workdir: Path, settings_with_broker: Settings, beat: Beat
) -> None:
    # No database at all behind this worker: an untracked message must not need one.
    offline = settings_with_broker.__class__(
        database_url=f"postgresql://nobody@127.0.0.1:{free_port()}/none",
        broker_url=settings_with_broker.broker_url,
        db_schema=settings_with_broker.db_schema,
    )
    with running_worker(workdir, offline) as plain:
        result = beat.client.send_task("userapp.add", args=[20, 22], queue=plain.queue)
        wait_for(lambda: plain.bodies(result.id), what="the body")
        plain.wait_for_log(rf"Task userapp.add\[{result.id}\] succeeded")
        assert "database unavailable" not in plain.text()
    with beat.engine.connect() as db:
        assert db.execute(select(func.count()).select_from(runs)).scalar() == 0


@pytest.mark.parametrize("pool", ["threads", "solo"])
def test_other_pools_track_runs_and_refuse_duplicates(
    workdir: Path, settings_with_broker: Settings, beat: Beat, pool: str
) -> None:
    with running_worker(workdir, settings_with_broker, pool=pool, concurrency=4) as other:
        schedule = beat.schedule(f"pool-{pool}", "userapp.sleep")
        run_ids = [beat.plan(schedule) for _ in range(3)]
        for run_id in run_ids:
            beat.publish(schedule, run_id, other, 0.2)
            beat.publish(schedule, run_id, other, 0.2)
        for run_id in run_ids:
            assert beat.wait_for_state(run_id, S.SUCCEEDED).result == "0.2"
            other.wait_for_log(rf"run {run_id} of tests/pool-{pool} is (running on|succeeded)")
            assert len(other.bodies(run_id)) == 1


def test_install_turns_on_late_acks_unless_the_app_configures_them(
    caplog: pytest.LogCaptureFixture,
) -> None:
    plain = Celery("plain", set_as_current=False)
    tracking.install(plain)
    assert (plain.conf.task_acks_late, plain.conf.task_reject_on_worker_lost) == (True, True)

    explicit = Celery("explicit", set_as_current=False)
    explicit.conf.update(task_acks_late=False)
    with caplog.at_level(logging.WARNING, logger="beatkeeper.worker"):
        tracking.install(explicit)
        assert explicit.conf.task_acks_late is False  # the user's choice stands...
    assert "task_acks_late is off" in caplog.text  # ...and is called out


def test_install_is_idempotent() -> None:
    app = Celery("twice", set_as_current=False)
    tracking.install(app)
    receivers = len(signals.worker_init.receivers)
    tracking.install(app)
    assert len(signals.worker_init.receivers) == receivers
