"""What the worker tests share (this module holds no tests).

- ``USER_APP``: a user's own Celery app with tracking installed in one line, the way a user
  would write it (``@app.task``, ``@shared_task``, a custom base class), written to a
  temporary directory and started as a real ``celery worker`` process by ``Worker.start``.
  Every task body appends ``<task> <task id> <pid> start|end`` to ``body.log``, so a test
  can count how many times a body really ran.
- ``Beat``: Beat's side of the message contract until the real scheduler drives these
  tests: it inserts run rows and publishes their messages, built as Beat builds them
  (``beatkeeper_worker.messages.message_for``), and republishes retries once they are due.
"""

from __future__ import annotations

import contextlib
import copy
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from beatkeeper_worker import brokers
from beatkeeper_worker.messages import Template, message_for
from celery import Celery
from sqlalchemy import Engine, select
from store_rows import add_run
from waiting import wait_for

from beatkeeper.settings import Settings
from beatkeeper.spec import validate_manifest
from beatkeeper.states import RunState
from beatkeeper.store.models import runs, schedules
from beatkeeper.store.runs import transition
from beatkeeper.store.schedules import Applied, apply_schedule

USER_APP = """
import os
import signal
import time

from celery import Celery, shared_task, signals

from beatkeeper_worker import tracking

app = Celery("userapp", broker=os.environ["USERAPP_BROKER_URL"])
app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=True,
    # Redis redelivers a message left unacknowledged by a stopped worker only after the
    # visibility timeout (an hour by default); tests that stop workers may shorten it.
    broker_transport_options={
        "visibility_timeout": float(os.environ.get("USERAPP_VISIBILITY_TIMEOUT", "3600")),
        "unacked_restore_interval": 1,
        "unacked_restore_throttle": 1,
    },
)
tracking.install(app)  # the one line


def record(task, state):
    with open(os.environ["USERAPP_BODY_LOG"], "a") as log:
        log.write(f"{task.name} {task.request.id} {os.getpid()} {state}\\n")


@app.task(bind=True, name="userapp.add")
def add(self, x, y):
    record(self, "start")
    return x + y


@shared_task(bind=True, name="userapp.echo")
def echo(self, value):
    record(self, "start")
    return value


@app.task(bind=True, name="userapp.fail")
def fail(self, message="boom"):
    record(self, "start")
    raise RuntimeError(message)


@app.task(bind=True, name="userapp.maybe_fail")
def maybe_fail(self, should_fail):
    record(self, "start")
    if should_fail:
        raise ValueError("asked to fail")
    return "fine"


@app.task(bind=True, name="userapp.sleep")
def sleep(self, seconds):
    record(self, "start")
    time.sleep(seconds)
    record(self, "end")
    return seconds


@app.task(bind=True, name="userapp.big")
def big(self):
    record(self, "start")
    return "x" * 100_000


class Audited(app.Task):
    def __call__(self, *args, **kwargs):
        return super().__call__(*args, **kwargs)


@app.task(bind=True, base=Audited, name="userapp.custom_call")
def custom_call(self, value):
    record(self, "start")
    return value


@app.task(bind=True, name="userapp.crash")
def crash(self):
    record(self, "start")
    os.kill(os.getpid(), signal.SIGKILL)


@app.task(bind=True, name="userapp.add_then_die")
def add_then_die(self, x, y):
    record(self, "start")
    return x + y


@signals.task_postrun.connect
def die_after_returning(sender=None, task_id=None, **_):
    # Once per run: the task has returned, Celery has not yet had its result (nor acked).
    marker = os.path.join(os.path.dirname(os.environ["USERAPP_BODY_LOG"]), f"died-{task_id}")
    if sender is not None and sender.name == "userapp.add_then_die" and not os.path.exists(marker):
        open(marker, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)


@app.task(bind=True, name="userapp.retry_once")
def retry_once(self):
    record(self, "start")
    if self.request.retries == 0:
        raise self.retry(countdown=0.2)
    return "second time lucky"
"""


@dataclass
class Worker:
    """A real ``celery worker`` process of the user's app, consuming its own queue."""

    process: subprocess.Popen[bytes]
    log: Path
    body_log: Path
    queue: str

    @classmethod
    def start(
        cls,
        directory: Path,
        settings: Settings,
        *,
        broker_url: str | None = None,
        pool: str = "prefork",
        concurrency: int = 2,
        environment: dict[str, str] | None = None,
        queue: str | None = None,
    ) -> Worker:
        (directory / "userapp.py").write_text(USER_APP)
        queue = queue or f"q-{uuid.uuid4().hex[:8]}"
        log = directory / f"worker-{queue}-{uuid.uuid4().hex[:4]}.log"
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(directory), *sys.path]),
            "USERAPP_BROKER_URL": broker_url or settings.require_broker_url(),
            "USERAPP_BODY_LOG": str(directory / "body.log"),
            "BEATKEEPER_DATABASE_URL": settings.require_database_url(),
            "BEATKEEPER_DB_SCHEMA": settings.db_schema,
            **(environment or {}),
        }
        command = [
            sys.executable, "-m", "celery", "-A", "userapp", "worker",
            "--pool", pool, "-c", str(concurrency), "-Q", queue,
            "-n", f"{queue}@%h", "--loglevel", "INFO",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
        ]  # fmt: skip
        with log.open("wb") as out:
            process = subprocess.Popen(
                command, cwd=directory, env=env, stdout=out, stderr=subprocess.STDOUT
            )
        worker = cls(process, log, directory / "body.log", queue)
        worker.wait_for_log(r"ready\.", timeout=30)
        return worker

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for_log(self, pattern: str, *, timeout: float = 20.0) -> re.Match[str]:
        def found() -> re.Match[str] | None:
            if self.process.poll() is not None:
                raise AssertionError(f"worker exited ({self.process.returncode}):\n{self.text()}")
            return re.search(pattern, self.text())

        return wait_for(found, timeout=timeout, what=f"{pattern!r} in the worker log")

    def bodies(self, run_id: uuid.UUID, state: str = "start") -> list[int]:
        """The pids of the processes that started (or ended) the body of ``run_id``."""
        if not self.body_log.exists():
            return []
        lines = (line.split() for line in self.body_log.read_text().splitlines())
        return [int(pid) for _, id_, pid, st in lines if id_ == str(run_id) and st == state]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextlib.contextmanager
def running_worker(directory: Path, settings: Settings, **options: Any) -> Iterator[Worker]:
    worker = Worker.start(directory, settings, **options)
    try:
        yield worker
    finally:
        worker.stop()


@dataclass
class Beat:
    """Beat's half of the contract: run rows in PostgreSQL, messages on the broker."""

    engine: Engine
    client: Celery
    published: list[uuid.UUID] = field(default_factory=list)

    @classmethod
    def connect(cls, engine: Engine, broker_url: str) -> Beat:
        client = Celery("beat-under-test", broker=broker_url, set_as_current=False)
        # Queues declared as Beat and tracked workers declare them (RabbitMQ refuses others).
        client.conf.update(
            task_serializer="json",
            accept_content=["json"],
            task_queue_max_priority=brokers.MAX_PRIORITY,
        )
        return cls(engine, client)

    def schedule(self, name: str, task: str, **spec: Any) -> Applied:
        document = {
            "apiVersion": "beatkeeper.io/v1alpha1",
            "kind": "Schedule",
            "metadata": {"name": name, "namespace": "tests"},
            "spec": {"task": task, "interval": "1h", **spec},
        }
        manifest = validate_manifest(copy.deepcopy(document), now=datetime.now(UTC)).manifest
        with self.engine.begin() as db:
            return apply_schedule(db, manifest, now=datetime.now(UTC))

    def plan(
        self,
        schedule: Applied,
        *,
        state: RunState = RunState.ENQUEUED,
        max_attempts: int = 1,
        task: str | None = None,
    ) -> uuid.UUID:
        planned = datetime.now(UTC)
        return add_run(
            self.engine,
            schedule,
            planned,
            state,
            task=task or self.task_of(schedule),
            max_attempts=max_attempts,
            enqueued_at=planned if state is RunState.ENQUEUED else None,
        )

    def task_of(self, schedule: Applied) -> str:
        with self.engine.connect() as db:
            task: str = db.execute(
                select(schedules.c.task).where(schedules.c.id == schedule.id)
            ).scalar_one()
        return task

    def publish(
        self,
        schedule: Applied,
        run_id: uuid.UUID,
        worker: Worker,
        *args: Any,
        task: str | None = None,
        run: Any = None,
        serializer: str = "json",
        time_limit: float | None = None,
    ) -> None:
        """Publish the run's message as Beat would, with ``args`` (and what else is given)."""
        run = run or self.run(run_id)
        template = Template(
            schedule=f"{schedule.namespace}/{schedule.name}",
            schedule_id=str(schedule.id),
            args=list(args),
            kwargs={},
            argsrepr=repr(list(args)),
            kwargsrepr="{}",
            queue=worker.queue,
            priority=None,
            expires=None,
            starting_deadline=None,
            time_limit=time_limit,
            soft_time_limit=None,
        )
        message = message_for(
            self.client,
            run_id=run_id,
            task=task or run.task,
            planned_at=run.planned_at,
            due_at=run.due_at,
            attempt=run.attempt,
            max_attempts=run.max_attempts,
            template=template,
            now=datetime.now(UTC),
            origin="tests",
        )
        with self.client.producer_or_acquire() as producer:
            producer.publish(
                message.body,
                exchange="",
                routing_key=message.queue,
                serializer=serializer,
                headers=message.headers,
                declare=[self.client.amqp.queues[message.queue]],
                **message.properties,
            )
        self.published.append(run_id)

    def republish_when_due(
        self, schedule: Applied, run_id: uuid.UUID, worker: Worker, *args: Any
    ) -> None:
        """What Beat does with a ``retrying`` run: wait in the database, then publish."""
        run = self.run(run_id)
        wait_for(lambda: datetime.now(UTC) >= run.due_at, timeout=30, what="the retry due_at")
        with self.engine.begin() as db:
            assert transition(db, run_id, RunState.ENQUEUED, now=datetime.now(UTC))
        self.publish(schedule, run_id, worker, *args)

    def run(self, run_id: uuid.UUID) -> Any:
        with self.engine.connect() as db:
            return db.execute(select(runs).where(runs.c.id == run_id)).one()

    def schedule_row(self, schedule: Applied) -> Any:
        with self.engine.connect() as db:
            return db.execute(select(schedules).where(schedules.c.id == schedule.id)).one()

    def wait_for_state(self, run_id: uuid.UUID, *states: RunState, timeout: float = 20.0) -> Any:
        wanted = {state.value for state in states}
        return wait_for(
            lambda: (row := self.run(run_id)).state in wanted and row,
            timeout=timeout,
            what=f"run {run_id} to be {' or '.join(sorted(wanted))}",
        )


def free_port() -> int:
    import socket  # noqa: PLC0415

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def later(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)
