"""Tracking over RabbitMQ (AMQP): the same contract as on Redis, with a real broker.

Needs a RabbitMQ server: ``BEATKEEPER_TEST_AMQP_URL`` (default
``amqp://guest:guest@127.0.0.1:5672//``); the tests skip, saying so, when none answers.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from sqlalchemy import Engine
from test_worker_support import Beat, Worker, running_worker

from beatkeeper.settings import Settings
from beatkeeper.states import RunState

AMQP_URL = os.environ.get("BEATKEEPER_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")


def _reachable(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5672), 2):
            return True
    except OSError:
        return False


pytestmark = pytest.mark.skipif(
    not _reachable(AMQP_URL),
    reason=f"no RabbitMQ answers at {urlsplit(AMQP_URL).netloc.rpartition('@')[2]} "
    "(set BEATKEEPER_TEST_AMQP_URL to test tracking over AMQP)",
)


@pytest.fixture(scope="module")
def worker(
    tmp_path_factory: pytest.TempPathFactory, settings: Settings, engine: Engine
) -> Iterator[Worker]:
    del engine  # migrated before the worker connects
    directory = tmp_path_factory.mktemp("rabbitmq")
    with running_worker(directory, settings, broker_url=AMQP_URL) as started:
        yield started


@pytest.fixture
def beat(db: Engine) -> Beat:
    return Beat.connect(db, AMQP_URL)


def test_run_published_on_rabbitmq_is_tracked(beat: Beat, worker: Worker) -> None:
    schedule = beat.schedule("rabbit", "userapp.add")
    run_id = beat.plan(schedule)
    beat.publish(schedule, run_id, worker, 20, 22)
    run = beat.wait_for_state(run_id, RunState.SUCCEEDED)
    assert run.result == "42"
    assert worker.bodies(run_id) == [run.worker_pid]


def test_duplicate_on_rabbitmq_runs_once(beat: Beat, worker: Worker) -> None:
    schedule = beat.schedule("rabbit-dup", "userapp.sleep")
    run_id = beat.plan(schedule)
    for _ in range(3):
        beat.publish(schedule, run_id, worker, 0.3)
    beat.wait_for_state(run_id, RunState.SUCCEEDED)
    worker.wait_for_log(rf"run {run_id} of tests/rabbit-dup is (running on|succeeded)")
    assert len(worker.bodies(run_id)) == 1
