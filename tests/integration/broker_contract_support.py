"""What the broker contract tests share (this module holds no tests).

``Contract``: one broker under test, a queue of the test's own, and Beat's side of the
contract (schedules applied, a Beat replica that publishes through the broker port, the
runs table); ``unreachable``: a URL of the same broker kind where nothing listens;
``kill_outright``: a worker and its pool SIGKILLed at once.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import os
import signal
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
from beatkeeper_worker import brokers
from beatkeeper_worker.tick import Ticker
from celery import Celery
from sqlalchemy import Engine, select
from test_beat import closed_port
from test_planning import settled
from test_worker_support import Worker, running_worker
from waiting import wait_for

from beatkeeper.settings import Settings
from beatkeeper.spec import validate_manifest
from beatkeeper.states import RunState
from beatkeeper.store.models import runs
from beatkeeper.store.schedules import apply_schedule

__all__ = ["Contract", "kill_outright", "unreachable"]


@dataclasses.dataclass
class Contract:
    """One broker under test, a queue of this test's own, and Beat's side of the contract."""

    url: str
    settings: Settings
    engine: Engine
    app: Celery
    broker: brokers.Broker
    queue: str
    workdir: Path

    def apply(self, name: str, *, task: str = "userapp.echo", **spec: Any) -> uuid.UUID:
        now = datetime.now(UTC)
        document = {
            "apiVersion": "beatkeeper.io/v1alpha1",
            "kind": "Schedule",
            "metadata": {"name": name, "namespace": "tests"},
            "spec": {"task": task, "args": [name], "interval": "1h", "queue": self.queue, **spec},
        }
        manifest = validate_manifest(copy.deepcopy(document), now=now).manifest
        with self.engine.begin() as db:
            return apply_schedule(db, manifest, now=now).id

    def ticker(self, broker: brokers.Broker | None = None, **options: Any) -> Ticker:
        """A Beat replica an hour and a second ahead: every ``interval: 1h`` schedule is due."""
        due = datetime.now(UTC) + timedelta(hours=1, seconds=1)
        options.setdefault("clock", lambda: due)
        return Ticker(self.engine, self.app, broker or self.broker, **options)

    def publish_due(self) -> int:
        ticker = self.ticker()
        try:
            return settled(ticker).published
        finally:
            ticker.close()

    def runs(self) -> list[Any]:
        with self.engine.connect() as db:
            return list(db.execute(select(runs).order_by(runs.c.planned_at)))

    def run_of(self, schedule_id: uuid.UUID) -> Any:
        [run] = [run for run in self.runs() if run.schedule_id == schedule_id]
        return run

    def wait_for_state(self, schedule_id: uuid.UUID, *states: RunState, timeout: float = 30) -> Any:
        wanted = {state.value for state in states}
        return wait_for(
            lambda: (run := self.run_of(schedule_id)).state in wanted and run,
            timeout=timeout,
            what=f"the run of {schedule_id} to be {' or '.join(sorted(wanted))}",
        )

    def worker(self, **options: Any) -> contextlib.AbstractContextManager[Worker]:
        return running_worker(
            self.workdir, self.settings, broker_url=self.url, queue=self.queue, **options
        )

    def purge(self) -> None:
        """Drop every waiting message, as a broker losing them would."""
        with self.app.connection_for_write() as connection:
            channel = connection.default_channel
            with contextlib.suppress(*connection.channel_errors):
                channel.queue_purge(self.queue)

    def delete_queue(self) -> None:
        with self.app.connection_for_write() as connection:
            # Purged first: kombu's Redis transport deletes only what this connection bound.
            for step in ("queue_purge", "queue_delete", "exchange_delete"):
                # A channel each: an AMQP broker closes a channel after a refused step.
                with contextlib.suppress(*connection.channel_errors, *connection.connection_errors):
                    getattr(connection.channel(), step)(self.queue)


def unreachable(url: str) -> str:
    """A URL of the same broker kind where nothing listens, with a password to keep out of logs."""
    if url.startswith("amqp"):
        return f"amqp://guest:secret@127.0.0.1:{closed_port()}//"
    return f"redis://:secret@127.0.0.1:{closed_port()}/0"


def kill_outright(worker: Worker) -> None:
    """SIGKILL the worker and its pool at once: no process gets to say goodbye."""
    main = psutil.Process(worker.process.pid)
    for process in [*main.children(recursive=True), main]:
        with contextlib.suppress(psutil.NoSuchProcess):
            os.kill(process.pid, signal.SIGKILL)
    worker.process.wait(timeout=10)
