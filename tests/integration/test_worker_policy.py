"""A real worker started with a tenancy policy never executes a run its policy forbids.

However the message reached it (published before the policy tightened, a replay, a forged
message), the body does not run; when the message is really its run's, the run is recorded
failed with a message naming the policy. The worker goes on running what is allowed.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from test_worker_support import Beat, Worker, running_worker

from beatkeeper.settings import Settings
from beatkeeper.states import RunState

S = RunState
POLICY = 'namespaces:\n  tests: {tasks: ["userapp.add"]}\n'


@pytest.fixture(scope="module")
def policy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("policy") / "policy.yaml"
    path.write_text(POLICY)
    return path


@pytest.fixture(scope="module")
def worker(
    tmp_path_factory: pytest.TempPathFactory,
    settings_with_broker: Settings,
    engine: Engine,
    policy: Path,
) -> Iterator[Worker]:
    del engine  # migrated before the worker connects
    directory = tmp_path_factory.mktemp("policy-worker")
    environment = {"BEATKEEPER_POLICY_FILE": str(policy)}
    with running_worker(directory, settings_with_broker, environment=environment) as started:
        yield started


@pytest.fixture
def beat(db: Engine, broker_url: str) -> Beat:
    return Beat.connect(db, broker_url)


def test_a_run_the_policy_forbids_is_never_executed_and_recorded_failed(
    beat: Beat, worker: Worker, policy: Path
) -> None:
    schedule = beat.schedule(f"echo-{uuid.uuid4().hex[:6]}", "userapp.echo")
    run_id = beat.plan(schedule)
    beat.publish(schedule, run_id, worker, "should not run")
    run = beat.wait_for_state(run_id, S.FAILED, S.SUCCEEDED)
    assert (run.state, run.error) == (
        S.FAILED,
        f"task userapp.echo is not allowed in namespace tests by the tenancy policy ({policy})",
    )
    assert worker.bodies(run_id) == []
    worker.wait_for_log(rf"run {run_id} of tests/{schedule.name} failed: task userapp.echo")
    allowed = beat.schedule(f"add-{uuid.uuid4().hex[:6]}", "userapp.add")
    good = beat.plan(allowed)
    beat.publish(allowed, good, worker, 40, 2)
    assert beat.wait_for_state(good, S.SUCCEEDED).result == "42"


def test_a_forged_message_for_a_forbidden_task_runs_nothing_and_fails_no_one(
    beat: Beat, worker: Worker
) -> None:
    victim = beat.schedule(f"victim-{uuid.uuid4().hex[:6]}", "userapp.add")
    run_id = beat.plan(victim)
    # A forbidden task under an allowed run's id: not executed, and the run is not its own.
    beat.publish(victim, run_id, worker, "forged", task="userapp.echo")
    worker.wait_for_log(rf"message for run {run_id} .*refused \(task userapp.echo is not")
    assert worker.bodies(run_id) == []
    assert beat.run(run_id).state == S.ENQUEUED
