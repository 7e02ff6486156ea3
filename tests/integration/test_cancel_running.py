"""`beatkeeper runs cancel` of a running run, end to end: two real Beats, a prefork worker.

The run's task sleeps, then writes a marker; the cancel must kill the pool process before
it gets there, record the run ``cancelled`` once (whichever Beat revoked it) with a message
naming who asked, and a second cancel must change nothing.
"""

from __future__ import annotations

import os
import signal
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select, update
from stopping import SLOW_TASK, Stack, process_gone
from waiting import wait_for

from beatkeeper.settings import Settings
from beatkeeper.spec import validate_manifest
from beatkeeper.states import RunState
from beatkeeper.store import lookups, requests
from beatkeeper.store.models import cancel_requests, run_counts, runs
from beatkeeper.store.runs import transition
from beatkeeper.store.schedules import apply_schedule

pytestmark = pytest.mark.slow


@pytest.fixture
def stack(tmp_path: Path, settings_with_broker: Settings, engine: Engine) -> Stack:
    del engine  # migrated before the processes connect
    return Stack(settings_with_broker, tmp_path)


@pytest.fixture
def cli(beatkeeper_cli: Any, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("BEATKEEPER_DATABASE_URL", settings.require_database_url())
    monkeypatch.setenv("BEATKEEPER_DB_SCHEMA", settings.db_schema)
    return beatkeeper_cli


def slow_run(db: Engine, queue: str, seconds: int, *, handle_term: bool = False) -> uuid.UUID:
    """A run of a schedule of ``slow.work`` on ``queue`` (3 attempts), triggered now."""
    spec = {"task": SLOW_TASK, "args": [seconds, handle_term], "interval": "1d", "queue": queue}
    document = {
        "apiVersion": "beatkeeper.io/v1alpha1",
        "kind": "Schedule",
        "metadata": {"name": "slow", "namespace": "tests"},
        "spec": {**spec, "retry": {"maxAttempts": 3, "backoff": {"initial": "1s"}}},
    }
    now = datetime.now(UTC)
    with db.begin() as connection:
        apply_schedule(connection, validate_manifest(document, now=now).manifest, now=now)
        schedule = lookups.find_schedule(connection, "tests", "slow")
        return requests.trigger(connection, schedule, now=now)


def run_row(db: Engine, run_id: uuid.UUID) -> Any:
    with db.connect() as connection:
        return connection.execute(select(runs).where(runs.c.id == run_id)).one()


def cancelled_count(db: Engine) -> int:
    query = select(run_counts.c.total).where(run_counts.c.state == "cancelled")
    with db.connect() as connection:
        return int(connection.execute(query).scalar() or 0)


@pytest.mark.parametrize("handle_term", [False, True], ids=["plain", "handles-sigterm"])
def test_cancel_stops_the_running_task_and_records_it_once(
    db: Engine, stack: Stack, cli: Any, handle_term: bool
) -> None:
    with stack.worker(), stack.beat("beat-a"), stack.beat("beat-b"):
        run_id = slow_run(db, stack.queue, seconds=60, handle_term=handle_term)
        pid = wait_for(lambda: stack.started_pid(run_id), timeout=30, what="the task started")
        wait_for(lambda: run_row(db, run_id).state == "running", what="the run running")
        owner = run_row(db, run_id).worker

        asked = cli("runs", "cancel", str(run_id)[:8])
        assert (asked.code, asked.err) == (0, "")
        assert asked.out == (
            f"cancel requested; run {run_id} is running on {owner}; it will be stopped\n"
        )
        wait_for(lambda: run_row(db, run_id).state == "cancelled", what="the run cancelled")
        if handle_term:  # the body turned SIGTERM into an exception; the process lives on
            interrupted = "raised unexpected: RuntimeError('interrupted by SIGTERM')"
            wait_for(lambda: interrupted in stack.log("worker"), what="the body interrupted")
        else:
            wait_for(lambda: process_gone(pid), what=f"pool process {pid} ended")

        assert not stack.finished(run_id)
        cancelled = run_row(db, run_id)
        assert cancelled.error.startswith("cancelled on request (beatkeeper runs cancel, by ")
        if not handle_term:  # else the task's own failure may be recorded first, as cancelled
            assert cancelled.error.endswith(f": stopped on {owner.split(' ')[0]}")
        assert (cancelled.state, cancelled.attempt) == ("cancelled", 1)  # never retried
        assert cancelled_count(db) == 1
        with db.connect() as connection:
            request = connection.execute(select(cancel_requests)).one()
        assert request.settled_at is not None
        assert request.revoked_at is not None

        again = cli("runs", "cancel", str(run_id))
        assert (again.code, again.out) == (
            0,
            f"run {run_id} was cancelled already; nothing to do\n",
        )
        assert cancelled_count(db) == 1
    beats = stack.log("beat-a") + stack.log("beat-b")
    assert beats.count(f"asked the workers to stop run {run_id}") == 1


def test_a_run_whose_process_died_is_cancelled_when_its_message_returns(
    db: Engine, stack: Stack, cli: Any
) -> None:
    with stack.worker():
        with stack.beat():
            run_id = slow_run(db, stack.queue, seconds=60)
            pid = wait_for(lambda: stack.started_pid(run_id), timeout=30, what="the task started")
            wait_for(lambda: run_row(db, run_id).state == "running", what="the run running")
        asked = cli("runs", "cancel", str(run_id))  # no Beat now: nobody revokes it
        assert asked.out.startswith(f"cancel requested; run {run_id} is running on ")
        os.kill(pid, signal.SIGKILL)  # the worker-lost path hands its message back
        wait_for(lambda: run_row(db, run_id).state == "cancelled", what="the run cancelled")
    cancelled = run_row(db, run_id)
    assert cancelled.error.endswith("is gone; not run again")
    assert cancelled.attempt == 1
    assert stack.started_pid(run_id) == pid  # the body did not start again
    assert cancelled_count(db) == 1


def test_a_run_that_is_not_running_yet_is_cancelled_at_once(
    db: Engine, stack: Stack, cli: Any
) -> None:
    run_id = slow_run(db, stack.queue, seconds=1)  # no Beat: it stays planned
    asked = cli("runs", "cancel", str(run_id))
    assert asked.out == f"run {run_id} cancelled (it was planned); it will not run\n"
    assert run_row(db, run_id).state == "cancelled"


def test_a_finished_run_cannot_be_cancelled(db: Engine, stack: Stack, cli: Any) -> None:
    run_id = slow_run(db, stack.queue, seconds=1)
    with stack.worker(), stack.beat():
        wait_for(lambda: run_row(db, run_id).state == "succeeded", what="the run succeeded")
    asked = cli("runs", "cancel", str(run_id))
    assert (asked.code, asked.out) == (1, "")
    assert asked.err == (
        f"beatkeeper: error: run {run_id} is succeeded: it has finished and cannot be cancelled\n"
    )


def test_asking_again_says_what_became_of_the_first_request(
    db: Engine, stack: Stack, cli: Any
) -> None:
    run_id = slow_run(db, stack.queue, seconds=1)
    with db.begin() as connection:  # as a worker's claim leaves it; no Beat, no worker here
        connection.execute(
            update(runs).where(runs.c.id == run_id).values(state="running", worker="w@h (pid 1)")
        )
    first = cli("runs", "cancel", str(run_id))
    assert (
        first.out
        == f"cancel requested; run {run_id} is running on w@h (pid 1); it will be stopped\n"
    )
    again = cli("runs", "cancel", str(run_id))
    assert again.out.startswith(f"run {run_id}: a cancel was requested at ")
    assert again.out.endswith(" already; it will be stopped\n")
    with db.begin() as connection:  # it finished before any Beat revoked it
        assert transition(connection, run_id, RunState.SUCCEEDED, now=datetime.now(UTC))
    late = cli("runs", "cancel", str(run_id))
    assert late.code == 0
    assert late.out.startswith(f"run {run_id} ended succeeded before the cancel asked at ")
    assert run_row(db, run_id).state == "succeeded"  # it keeps its outcome
