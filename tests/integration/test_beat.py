"""Real ``celery beat`` processes with the database scheduler, and real Celery workers.

The worker here is a stand-alone Celery app (written to a temporary directory) with one task
that records what it received: it proves that Beat's messages are plain Celery protocol 2
messages any worker accepts, whatever beatkeeper's own worker does with them.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import itertools
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import Engine, select, text
from stopping import stop
from waiting import wait_for

from beatkeeper.settings import Settings
from beatkeeper.spec import validate_manifest
from beatkeeper.states import RunState
from beatkeeper.store import notifications
from beatkeeper.store.models import runs
from beatkeeper.store.schedules import apply_schedule

SCHEDULER = "beatkeeper_worker.beat:DatabaseScheduler"

PROBE_APP = """
import json, os
from celery import Celery
from beatkeeper_worker.messages import HEADERS

app = Celery("probe", broker=os.environ["PROBE_BROKER_URL"])
# task_queue_max_priority: declared as Beat declares queues (RabbitMQ refuses it otherwise).
app.conf.update(accept_content=["json"], task_acks_late=True, worker_prefetch_multiplier=1,
                worker_hijack_root_logger=False, task_queue_max_priority=9)

@app.task(name="probe.record", bind=True)
def record(self, *args, **kwargs):
    request = self.request
    seen = {"id": request.id, "args": list(args), "kwargs": kwargs, "retries": request.retries,
            "headers": {k: getattr(request, k, None) for k in HEADERS}}
    with open(os.environ["PROBE_OUT"], "a") as out:
        out.write(json.dumps(seen) + "\\n")
"""


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@dataclasses.dataclass
class Stack:
    engine: Engine
    settings: Settings
    queue: str
    workdir: Path

    def env(self, **overrides: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BEATKEEPER_")}
        env.update(
            BEATKEEPER_DATABASE_URL=self.settings.require_database_url(),
            BEATKEEPER_DB_SCHEMA=self.settings.db_schema,
            BEATKEEPER_BROKER_URL=self.settings.require_broker_url(),
            BEATKEEPER_LOG_FORMAT="console",
            PYTHONPATH=os.pathsep.join([str(self.workdir), env.get("PYTHONPATH", "")]),
        )
        env.update(overrides)
        return env

    @contextlib.contextmanager
    def process(self, name: str, args: list[str], env: dict[str, str]) -> Iterator[Any]:
        log = self.workdir / f"{name}.log"
        with log.open("w") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "celery", *args],
                env=env,
                cwd=self.workdir,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        process.log = log  # type: ignore[attr-defined]
        try:
            yield process
        finally:
            stop(process, timeout=15)

    def beat(self, name: str = "beat", **env: str) -> contextlib.AbstractContextManager[Any]:
        args = ["-A", "beatkeeper_worker", "beat", "-S", SCHEDULER, "-l", "INFO"]
        return self.process(name, [*args, "--schedule", str(self.workdir / name)], self.env(**env))

    def probe_worker(self, broker_url: str) -> contextlib.AbstractContextManager[Any]:
        (self.workdir / "probe_app.py").write_text(PROBE_APP)
        env = self.env(PROBE_BROKER_URL=broker_url, PROBE_OUT=str(self.workdir / "probe.jsonl"))
        args = ["-A", "probe_app", "worker", "-Q", self.queue, "-P", "solo", "-l", "INFO"]
        args += ["--without-mingle", "--without-gossip", "--without-heartbeat"]
        return self.process("worker", args, env)

    def received(self) -> list[dict[str, Any]]:
        path = self.workdir / "probe.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line]

    def apply(self, name: str, **spec: Any) -> None:
        now = datetime.now(UTC)
        document = {
            "apiVersion": "beatkeeper.io/v1alpha1",
            "kind": "Schedule",
            "metadata": {"name": name, "namespace": "team"},
            "spec": {"task": "probe.record", "interval": "1s", "queue": self.queue, **spec},
        }
        with self.engine.begin() as db:
            apply_schedule(
                db, validate_manifest(copy.deepcopy(document), now=now).manifest, now=now
            )

    def runs(self) -> list[Any]:
        with self.engine.connect() as db:
            return list(db.execute(select(runs).order_by(runs.c.schedule_id, runs.c.planned_at)))

    def messages(self) -> list[dict[str, Any]]:
        client = redis.Redis.from_url(self.settings.require_broker_url())
        try:
            return [json.loads(raw) for raw in client.lrange(self.queue, 0, -1)]
        finally:
            client.close()


@pytest.fixture
def stack(db: Engine, settings_with_broker: Settings, tmp_path: Path) -> Iterator[Stack]:
    # The test broker's own database: the queue's random name keeps other tests' workers,
    # and other runs sharing the server, off it.
    queue = f"bk-beat-{secrets.token_hex(4)}"
    yield Stack(db, settings_with_broker, queue, tmp_path)
    client = redis.Redis.from_url(settings_with_broker.require_broker_url())
    client.delete(queue)
    client.close()


def log_of(process: Any) -> str:
    return str(process.log.read_text())


@pytest.mark.slow
def test_a_standard_celery_worker_runs_what_beat_publishes(stack: Stack) -> None:
    stack.apply("a", args=[1, "x"], kwargs={"k": "v"})
    stack.apply("b", interval="2s")
    with stack.probe_worker(stack.settings.require_broker_url()), stack.beat():
        wait_for(lambda: len(stack.received()) >= 4, timeout=30, what="4 tasks to run")
    by_id = {str(run.id): run for run in stack.runs()}
    for seen in stack.received():
        run = by_id[seen["id"]]  # the task id is the run id
        headers = seen["headers"]
        assert headers["beatkeeper_schedule_id"] == str(run.schedule_id)
        assert headers["beatkeeper_planned_at"] == run.planned_at.isoformat()
        assert (headers["beatkeeper_attempt"], headers["beatkeeper_max_attempts"]) == (1, 1)
        if headers["beatkeeper_schedule"] == "team/a":
            assert (seen["args"], seen["kwargs"]) == ([1, "x"], {"k": "v"})


@pytest.mark.slow
def test_two_beat_replicas_publish_every_occurrence_exactly_once(stack: Stack) -> None:
    for n in range(40):
        stack.apply(f"s{n}", missedRuns="RunAll")
    with stack.beat("beat-1"), stack.beat("beat-2"):
        wait_for(lambda: len(stack.runs()) >= 40 * 5, timeout=30, what="5 rounds of runs")
        # While both run, no run is sent twice. (SIGTERM can stop a Beat between sending a
        # batch and committing it; the other then sends those runs again under the same
        # ids, which workers drop: that is the documented crash path, not checked here.)
        running = [m["headers"]["id"] for m in stack.messages()]
        assert len(running) == len(set(running))  # no duplicate message
    all_runs = stack.runs()
    published = {m["headers"]["id"] for m in stack.messages()}
    enqueued = {str(r.id) for r in all_runs if r.state == RunState.ENQUEUED}
    assert published == enqueued
    assert {r.state for r in all_runs} <= {RunState.ENQUEUED, RunState.PLANNED}
    by_schedule: dict[Any, list[datetime]] = {}
    for run in all_runs:
        by_schedule.setdefault(run.schedule_id, []).append(run.planned_at)
    for planned in by_schedule.values():  # no gap: one run per second, in a row
        steps = {b - a for a, b in itertools.pairwise(planned)}
        assert steps <= {timedelta(seconds=1)}


@pytest.mark.slow
def test_beat_wakes_on_a_schedule_change_instead_of_polling(stack: Stack) -> None:
    with stack.beat() as beat:
        wait_for(lambda: _listening(stack), timeout=20, what="Beat to LISTEN")
        time.sleep(0.2)  # let it enter its idle wait (60 s without a NOTIFY)
        at = datetime.now(UTC) + timedelta(seconds=1)
        stack.apply("once", interval=None, at=at.isoformat())
        wait_for(stack.messages, timeout=5, what="the one-shot to be published")
        # Beat records `enqueued` just after the broker took the message.
        wait_for(lambda: stack.runs()[0].enqueued_at, timeout=5, what="the run marked enqueued")
    [run] = stack.runs()
    assert run.enqueued_at - run.due_at < timedelta(seconds=1), log_of(beat)


def _listening(stack: Stack) -> bool:
    """Whether this stack's Beat listens: on its own schema's channel, whatever other Beats
    share the server."""
    query = (
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = :name"
        " AND query = 'LISTEN \"' || :channel || '\"'"
    )
    channel = notifications.channel_for(stack.settings.db_schema)
    with stack.engine.connect() as db:
        count = db.execute(
            text(query), {"name": "beatkeeper-beat-listen", "channel": channel}
        ).scalar_one()
    return bool(count)


@pytest.mark.slow
def test_an_unreachable_database_is_one_log_line_per_retry_not_a_crash(stack: Stack) -> None:
    down = f"postgresql://bk:secret@127.0.0.1:{closed_port()}/bk"
    with stack.beat(BEATKEEPER_DATABASE_URL=down) as beat:
        wait_for(lambda: log_of(beat).count("retrying in") >= 3, timeout=20, what="3 retries")
        assert beat.poll() is None  # still running
    log = log_of(beat)
    assert "cannot connect to PostgreSQL at postgresql+psycopg://bk:***@127.0.0.1" in log
    assert "Traceback" not in log
    assert "secret" not in log


@pytest.mark.slow
def test_an_unmigrated_schema_is_one_clear_line_per_retry(stack: Stack) -> None:
    with stack.beat(BEATKEEPER_DB_SCHEMA="bk_never_migrated") as beat:
        wait_for(lambda: "run `beatkeeper migrate`" in log_of(beat), timeout=20, what="the hint")
        assert beat.poll() is None
    assert "Traceback" not in log_of(beat)


@pytest.mark.parametrize("missing", ["BEATKEEPER_BROKER_URL", "BEATKEEPER_DATABASE_URL"])
def test_a_missing_setting_stops_beat_with_one_line(stack: Stack, missing: str) -> None:
    env = stack.env()
    del env[missing]
    args = [sys.executable, "-m", "celery", "-A", "beatkeeper_worker", "beat", "-S", SCHEDULER]
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode != 0
    assert f"{missing} is not set" in done.stderr
    assert "Traceback" not in done.stderr


def test_flower_starts_with_the_broker_url_alone(broker_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BEATKEEPER_")}
    env |= {"BEATKEEPER_BROKER_URL": broker_url, "FLOWER_UNAUTHENTICATED_API": "true"}
    port = _free_port()
    args = [sys.executable, "-m", "celery", "-A", "beatkeeper_worker", "flower", f"--port={port}"]
    flower = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for(
            lambda: _answers(f"http://127.0.0.1:{port}/healthcheck"), timeout=30, what="Flower"
        )
    finally:
        flower.terminate()
        flower.wait(timeout=30)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.slow
def test_beat_records_a_run_the_policy_forbids_cancelled_and_publishes_nothing_of_it(
    stack: Stack,
) -> None:
    # Written straight into the store (as before the policy tightened): nothing refused it.
    stack.apply("allowed")
    stack.apply("forbidden", task="probe.forbidden")
    policy = stack.workdir / "policy.yaml"
    policy.write_text('namespaces:\n  team: {tasks: ["probe.record"]}\n')

    def refused() -> list[Any]:
        return [r for r in stack.runs() if r.task == "probe.forbidden"]

    with stack.beat(BEATKEEPER_POLICY_FILE=str(policy)) as beat:
        wait_for(
            lambda: any(r.state == RunState.CANCELLED for r in refused()),
            timeout=30,
            what="a forbidden run recorded cancelled",
        )
        wait_for(lambda: len(stack.messages()) >= 2, timeout=30, what="2 allowed runs sent")
    assert {m["headers"]["task"] for m in stack.messages()} == {"probe.record"}
    reason = (
        f"task probe.forbidden is not allowed in namespace team by the tenancy policy ({policy})"
    )
    states = {r.state for r in refused()}
    # None was sent; a slow tick may record an occurrence missed at birth instead.
    assert states <= {RunState.PLANNED, RunState.CANCELLED, RunState.MISSED}
    cancelled = [r for r in refused() if r.state == RunState.CANCELLED]
    assert cancelled
    assert {r.error for r in cancelled} == {reason}
    assert reason in log_of(beat)


def test_an_unreadable_policy_file_stops_beat_with_one_line(stack: Stack) -> None:
    env = stack.env(BEATKEEPER_POLICY_FILE=str(stack.workdir / "missing.yaml"))
    args = [sys.executable, "-m", "celery", "-A", "beatkeeper_worker", "beat", "-S", SCHEDULER]
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode != 0
    assert f"cannot read the policy file {stack.workdir / 'missing.yaml'}" in done.stderr
    assert "Traceback" not in done.stderr
