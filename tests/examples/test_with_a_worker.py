"""The publishing tick and a real `celery worker` process: the tick's messages reach the
publish queue, a worker of beatkeeper's app with the examples imported consumes them, and
each job is published once."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from beatkeeper_examples import db, tables
from beatkeeper_examples.publishing import scheduler
from celery import Celery
from sqlalchemy import Engine, insert, select
from waiting import wait_for

from beatkeeper.settings import Settings

pytestmark = pytest.mark.slow


@pytest.fixture
def publish_worker(
    examples: Engine, engine: Engine, settings: Settings, broker_url: str, tmp_path: Path
) -> Iterator[str]:
    """A worker consuming a queue of this test's own; the queue's name."""
    queue = f"publish-{secrets.token_hex(4)}"
    log = tmp_path / "worker.log"
    env = {
        **os.environ,
        "BEATKEEPER_DATABASE_URL": settings.require_database_url(),
        "BEATKEEPER_DB_SCHEMA": settings.db_schema,
        "BEATKEEPER_BROKER_URL": broker_url,
        "BEATKEEPER_IMPORTS": "beatkeeper_examples.tasks",
        "BEATKEEPER_EXAMPLES_SCHEMA": db.schema_of(examples),
    }
    command = [sys.executable, "-m", "celery", "-A", "beatkeeper_worker", "worker", "-P", "solo",
               "-Q", queue, "-n", f"{queue}@%h", "-l", "INFO", "--without-gossip",
               "--without-mingle", "--without-heartbeat"]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: "ready." in log.read_text(), timeout=60, what="the worker to be ready")
        yield queue
    finally:
        process.terminate()
        process.wait(timeout=30)
        redis.Redis.from_url(broker_url).delete(queue)


def test_the_ticks_jobs_are_published_by_a_real_worker_once(
    examples: Engine, broker_url: str, publish_worker: str
) -> None:
    now = datetime.now(UTC)
    rows = [{"platform": "x", "body": f"post {k}", "next_run_at": now - timedelta(seconds=k)}
            for k in range(3)]  # fmt: skip
    with examples.begin() as conn:
        conn.execute(insert(tables.post_schedules), rows)
    Celery("worker-tests", broker=broker_url, set_as_current=False).set_current()

    assert scheduler.scheduler_tick.run(publish_queue=publish_worker)["sent"] == 3
    assert scheduler.scheduler_tick.run(publish_queue=publish_worker)["sent"] == 0

    def statuses() -> list[str]:
        with examples.connect() as conn:
            return list(conn.execute(select(tables.publish_jobs.c.status)).scalars())

    wait_for(lambda: statuses() == ["succeeded"] * 3, timeout=60, what="3 jobs to succeed")
    with examples.connect() as conn:
        attempts = conn.execute(select(tables.publish_jobs.c.attempt)).scalars().all()
    assert list(attempts) == [1, 1, 1]
