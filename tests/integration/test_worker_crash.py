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
        assert beat.wait_for_state(run_id, S.RUNNING).worker.endswith(")")
        os.kill(victim, signal.SIGKILL)

        run = beat.wait_for_state(run_id, S.SUCCEEDED, timeout=30)
        assert worker.bodies(run_id)[0] == victim
        assert len(worker.bodies(run_id)) == 2  # started again after the kill...
        assert victim not in worker.bodies(run_id, "end")  # ...and finished once
        assert len(worker.bodies(run_id, "end")) == 1
        assert f"pid {victim}," not in run.worker
        worker.wait_for_log(rf"run {run_id} of tests/long taken over from .*pid {victim},")


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
    assert beat.run(run_id).state == S.ENQUEUED
    with running_worker(tmp_path, settings_with_broker, queue=queue, environment=quick) as healthy:
        run = beat.wait_for_state(run_id, S.SUCCEEDED, timeout=30)
        assert run.result == "42"
        assert len(healthy.bodies(run_id)) == 1
