"""The reliability suite's scenario: its schedules, what the database and broker hold, a verdict.

``Scenario`` applies the schedules (every one due each second of a window, catching up
whatever comes due while no Beat runs), creates the ``bodies`` table the workers' task
writes its marks to (``reliability_app``), and reads back runs, marks and what is left on
the broker. ``judge`` turns runs, marks and the fleet's kills into a ``Verdict``: which
runs have no finished body, and which ran more often than a killed process explains.
This module starts no process; ``reliability_fleet`` does.
"""

from __future__ import annotations

import collections
import copy
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import redis
from reliability_fleet import QUEUE, Kill
from reliability_servers import PostgresServer, RedisServer
from sqlalchemy import Engine, text

from beatkeeper.settings import Settings
from beatkeeper.spec import validate_manifest
from beatkeeper.store.schedules import apply_schedule

BODIES = """
CREATE TABLE public.bodies (
    execution uuid PRIMARY KEY,
    run_id uuid NOT NULL,
    pid integer NOT NULL,
    started_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at timestamptz
)
"""


@dataclass
class Scenario:
    settings: Settings
    engine: Engine
    postgres: PostgresServer
    redis_server: RedisServer
    folder: Path

    def env(self) -> dict[str, str]:
        """The environment of every Beat replica and worker (no settings from outside)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("BEATKEEPER_")}
        env.update(
            BEATKEEPER_DATABASE_URL=self.settings.require_database_url(),
            BEATKEEPER_DB_SCHEMA=self.settings.db_schema,
            BEATKEEPER_BROKER_URL=self.redis_server.url,
            BEATKEEPER_LOG_FORMAT="console",
            # A message lost between Redis and a worker is sent again this soon (the
            # workers' visibility timeout is 5 s too); production waits five minutes.
            BEATKEEPER_REDELIVER_AFTER="5s",
            RELIABILITY_BROKER_URL=self.redis_server.url,
            RELIABILITY_MARKS_URL=self.postgres.url,
        )
        return env

    def create_bodies_table(self) -> None:
        with self.engine.begin() as db:
            db.execute(text(BODIES))

    def apply(self, count: int, *, start: datetime, end: datetime) -> None:
        """``count`` schedules every second from ``start`` to ``end``, catching up everything."""
        spec = {
            "task": "reliability.record",
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

    def off_window(self, *, first: datetime, last: datetime) -> list[Any]:
        """Schedules whose runs do not begin at ``first`` and end at ``last``."""
        query = """
            SELECT schedule_id, min(planned_at) AS first, max(planned_at) AS last FROM runs
            GROUP BY schedule_id HAVING min(planned_at) <> :first OR max(planned_at) <> :last
        """
        with self.engine.connect() as db:
            return list(db.execute(text(query), {"first": first, "last": last}))

    def unsettled(self, limit: int = 20) -> list[Any]:
        """Runs not (yet) succeeded: their state, when they were enqueued, who ran them."""
        query = "SELECT id, state, enqueued_at, started_at, worker FROM runs"
        with self.engine.connect() as db:
            where = " WHERE state <> 'succeeded' ORDER BY enqueued_at LIMIT :limit"
            return list(db.execute(text(query + where), {"limit": limit}))

    def owners(self) -> dict[str, int | None]:
        """Each run's id and the pid of the worker process that recorded its outcome."""
        with self.engine.connect() as db:
            rows = db.execute(text("SELECT id, worker_pid FROM runs"))
            return {str(row.id): row.worker_pid for row in rows}

    def bodies(self) -> list[Any]:
        with self.engine.connect() as db:
            query = "SELECT run_id, pid, started_at, finished_at FROM public.bodies"
            return list(db.execute(text(query)))

    def broker_holds(self) -> int:
        """Messages still queued or taken but not acknowledged (kombu's ``unacked`` hash)."""
        client = redis.Redis.from_url(self.redis_server.url)
        try:
            queued = sum(int(client.llen(key)) for key in client.scan_iter(f"{QUEUE}*"))
            return queued + int(client.hlen("unacked"))
        finally:
            client.close()


@dataclass(frozen=True)
class Verdict:
    """What the marks say about every run's executions."""

    unfinished: list[str]  # runs whose body never finished
    strangers: list[str]  # marks of runs that do not exist
    unexplained: dict[str, list[Any]]  # runs that ran more often than kills explain
    re_executions: int  # bodies started again after the first
    finished_twice: int  # runs whose body finished more than once
    cut_short: int  # bodies that started and never finished (their process was killed)


def judge(owners: dict[str, int | None], bodies: Sequence[Any], kills: Sequence[Kill]) -> Verdict:
    """Every run's body finished, and ran more than once only where a kill cut one short.

    A run has exactly one execution that counts: the one its recorded owner ran. Any other
    must be explained by a SIGKILL of its process while that execution was the last one the
    process had started (the body was running, or its outcome not recorded yet): then the
    run was taken over or redelivered, which is ``acks_late`` doing its job.
    """
    by_run: dict[str, list[Any]] = collections.defaultdict(list)
    by_pid: dict[int, list[Any]] = collections.defaultdict(list)
    for body in bodies:
        by_run[str(body.run_id)].append(body)
        by_pid[body.pid].append(body)

    def counts(run: str, mark: Any) -> bool:
        return mark.pid == owners.get(run) or not _cut_by_a_kill(mark, by_pid[mark.pid], kills)

    finished = {run: sum(bool(m.finished_at) for m in marks) for run, marks in by_run.items()}
    return Verdict(
        unfinished=sorted(run for run in owners if not finished.get(run)),
        strangers=sorted(set(by_run) - set(owners)),
        unexplained={
            run: marks
            for run, marks in by_run.items()
            if sum(counts(run, mark) for mark in marks) > 1
        },
        re_executions=sum(len(marks) - 1 for marks in by_run.values()),
        finished_twice=sum(count > 1 for count in finished.values()),
        cut_short=sum(not mark.finished_at for mark in bodies),
    )


def _cut_by_a_kill(mark: Any, of_its_process: Sequence[Any], kills: Sequence[Kill]) -> bool:
    """Whether ``mark``'s process was SIGKILLed while ``mark`` was the last body it started."""
    for kill in kills:
        if mark.pid in kill.pids and mark.started_at.timestamp() <= kill.at:
            before = [m for m in of_its_process if m.started_at.timestamp() <= kill.at]
            if max(before, key=lambda m: m.started_at) is mark:
                return True
    return False


def occurrences_between(start: datetime, end: datetime) -> int:
    return int((end - start) / timedelta(seconds=1)) + 1
