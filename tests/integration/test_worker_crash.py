"""Killed workers and an unreachable database lose no run and run no body twice."""

from __future__ import annotations

import dataclasses
import os
import signal
from pathlib import Path

import pytest
from sqlalchemy import Engine
from test_worker_support import Beat, free_port, running_worker
from waiting import wait_for

from beatkeeper.settings import Settings
from beatkeeper.states import RunState

S = RunState


@pytest.fixture
def beat(db: Engine, broker_url: str) -> Beat:
    return Beat.connect(db, broker_url)


def test_run_of_a_sigkilled_process_is_taken_over_and_finishes_once(
    tmp_path: Path, settings_with_broker: Settings, beat: Beat
) -> None:
    with running_worker(tmp_path, settings_with_broker) as worker:
        schedule = beat.schedule("long", "userapp.sleep")
        run_id = beat.plan(schedule)
        beat.publish(schedule, run_id, worker, 2)
        [victim] = wait_for(lambda: worker.bodies(run_id), what="the body to start")
        assert beat.wait_for_state(run_id, S.RUNNING).worker_pid == victim
        os.kill(victim, signal.SIGKILL)

        run = beat.wait_for_state(run_id, S.SUCCEEDED, timeout=30)
        assert worker.bodies(run_id)[0] == victim
        assert len(worker.bodies(run_id)) == 2  # started again after the kill...
        assert victim not in worker.bodies(run_id, "end")  # ...and finished once
        assert len(worker.bodies(run_id, "end")) == 1
        assert run.worker_pid not in {victim, None}
        worker.wait_for_log(rf"run {run_id} of tests/long taken over from .*pid {victim},")


def test_process_killed_right_after_the_body_returned_has_its_success_recorded(
    tmp_path: Path, settings_with_broker: Settings, beat: Beat
) -> None:
    # The outcome must have left the process before the task returns: the process is
    # killed before Celery learns the result, the message comes back, and the run it
    # carries is found finished rather than run again.
    with running_worker(tmp_path, settings_with_broker, concurrency=1) as worker:
        schedule = beat.schedule("sudden", "userapp.add_then_die")
        run_id = beat.plan(schedule)
        beat.publish(schedule, run_id, worker, 20, 22)
        run = beat.wait_for_state(run_id, S.SUCCEEDED, timeout=30)
        worker.wait_for_log(rf"run {run_id} of tests/sudden is succeeded: not run again")
        assert run.result == "42"
        assert len(worker.bodies(run_id)) == 1


def test_a_run_that_kills_every_process_running_it_is_failed_after_three(
    tmp_path: Path, settings_with_broker: Settings, beat: Beat
) -> None:
    with running_worker(tmp_path, settings_with_broker, concurrency=1) as worker:
        schedule = beat.schedule("poison", "userapp.crash")
        run_id = beat.plan(schedule)
        beat.publish(schedule, run_id, worker)
        run = beat.wait_for_state(run_id, S.FAILED, timeout=60)
        assert run.error.startswith("WorkerLost: 3 worker processes died running this run")
        assert run.worker_losses == 3
        assert len(set(worker.bodies(run_id))) == 3  # three processes, each killed once
        worker.wait_for_log(rf"run {run_id} of tests/poison failed: WorkerLost")


def test_database_down_requeues_the_message_and_a_later_worker_runs_it(
    tmp_path: Path, settings_with_broker: Settings, beat: Beat
) -> None:
    unreachable = dataclasses.replace(
        settings_with_broker, database_url=f"postgresql://x@127.0.0.1:{free_port()}/x"
    )
    schedule = beat.schedule("patient", "userapp.add")
    run_id = beat.plan(schedule)
    # A message the cut-off worker still held when it stopped comes back within seconds.
    quick = {"USERAPP_VISIBILITY_TIMEOUT": "5"}
    with running_worker(tmp_path, unreachable, concurrency=1, environment=quick) as cut_off:
        beat.publish(schedule, run_id, cut_off, 40, 2)
        cut_off.wait_for_log(
            rf"run {run_id} of tests/patient not started, message requeued: "
            r"cannot connect to PostgreSQL at postgresql\+psycopg://x@127\.0\.0\.1",
            timeout=30,
        )
        queue = cut_off.queue
    assert cut_off.bodies(run_id) == []
    assert "Traceback" not in cut_off.text()  # an outage is said in one line, not a stack
    assert beat.run(run_id).state == S.ENQUEUED
    with running_worker(tmp_path, settings_with_broker, queue=queue, environment=quick) as healthy:
        run = beat.wait_for_state(run_id, S.SUCCEEDED, timeout=30)
        assert run.result == "42"
        assert len(healthy.bodies(run_id)) == 1
