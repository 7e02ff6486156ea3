"""Celery Beat that schedules from PostgreSQL, for any number of replicas at once.

Run it the Celery way::

    celery -A beatkeeper_worker beat -S beatkeeper_worker.beat:DatabaseScheduler

Each tick (``Ticker.tick``) repeats, batch by batch, until nothing is due: claim due
schedules, plan their runs and advance them, commit; then lock due runs, publish them with
the run id as task id, mark them ``enqueued``, commit (the queries and the reasoning for
why replicas never duplicate nor lose an occurrence are in ``beatkeeper.store.planning``;
what each due schedule gets is ``beatkeeper.plans``).
Between ticks Beat sleeps until the next due instant, or until a ``NOTIFY`` says a schedule
changed, whichever comes first; it never polls on a fixed period and never holds schedules
in memory beyond the batch at hand.

A database or broker that cannot be reached is logged in one line and retried with
exponential backoff; nothing planned is lost meanwhile (committed runs are published once
the broker is back, due schedules are planned once the database is).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import psycopg
import redis
from celery import Celery
from celery.beat import Scheduler
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import InterfaceError, OperationalError, ProgrammingError

from beatkeeper import plans
from beatkeeper.observability import metrics
from beatkeeper.observability.http import HealthServer
from beatkeeper.recurrence import Recurrence
from beatkeeper.settings import SettingsError, mask_url
from beatkeeper.spec import ScheduleSpec, recurrence_of
from beatkeeper.states import RunState
from beatkeeper.store import DatabaseUnavailable, make_engine, planning, transition_many
from beatkeeper_worker.app import settings_of
from beatkeeper_worker.broker import Publisher
from beatkeeper_worker.health import BeatHealth, QueueLength
from beatkeeper_worker.publish import Phases, RunPublisher, Templates, timed

__all__ = ["Backoff", "DatabaseScheduler", "TickReport", "Ticker", "Waiter"]

log = logging.getLogger(__name__)

BATCH_SIZE = 500
MAX_TICK_SECONDS = 2.0  # hand control back to Celery's loop at least this often
IDLE_WAKE_SECONDS = 60.0  # a safety net under LISTEN/NOTIFY, not a poll
CONTENDED_WAIT_SECONDS = 0.01  # what is due is held by another replica for a moment
PRUNE_EVERY = 25  # prune a schedule's history every this many occurrences
MEASURE_EVERY = 5.0  # count the due backlog and the queue at most this often
_UNDEFINED_TABLE = "42P01"


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclasses.dataclass
class TickReport:
    claimed: int = 0
    planned: int = 0
    finished_at_birth: int = 0  # missed, skipped or expired when planned
    published: int = 0
    dropped: int = 0  # missed or expired when their turn to publish came
    cancelled: int = 0  # by concurrencyPolicy: Replace
    pruned: int = 0
    phases: Phases = dataclasses.field(default_factory=lambda: Phases(float))

    def add(self, other: TickReport) -> None:
        for name in ("claimed", "planned", "finished_at_birth", "published", "dropped"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.cancelled += other.cancelled
        self.pruned += other.pruned
        for phase, seconds in other.phases.items():
            self.phases[phase] += seconds


@dataclasses.dataclass(frozen=True)
class _Claimed:
    due: plans.DueSchedule
    spec: ScheduleSpec
    plan: plans.Plan


class Ticker:
    """Plans and publishes what is due, batch by batch; knows nothing of Celery's loop."""

    def __init__(
        self,
        engine: Engine,
        app: Celery,
        publisher: Publisher,
        *,
        batch_size: int = BATCH_SIZE,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._engine = engine
        self._connections: dict[str, Connection] = {}
        self._app = app
        self._runs = RunPublisher(app, publisher)
        self.batch_size = batch_size
        self._clock = clock

    def tick(self) -> TickReport:
        report = TickReport()
        templates: Templates = {}
        started = time.monotonic()
        while True:
            more = self._plan_batch(templates, report)
            db, now = self._connection("publish"), self._clock()
            published = self._runs.publish_due(
                db, templates, report.phases, now=now, limit=self.batch_size
            )
            report.published += published.sent
            report.dropped += published.dropped
            more = more or published.locked == self.batch_size
            if not more or time.monotonic() - started > MAX_TICK_SECONDS:
                return report

    def next_wake(self) -> datetime | None:
        db = self._connection("plan")
        with db.begin():
            return planning.next_wake(db)

    def due_backlog(self) -> int:
        """How many due runs wait to be published (after a tick: those it had no time for)."""
        db = self._connection("plan")
        with db.begin():
            return planning.count_due_runs(db, now=self._clock())

    def close(self) -> None:
        """Drop the held connections (after an error, or at shutdown); the next tick reconnects."""
        connections, self._connections = self._connections, {}
        for connection in connections.values():
            with contextlib.suppress(Exception):  # it may be the broken one
                connection.invalidate()
                connection.close()

    def _connection(self, role: str) -> Connection:
        """One connection per role held across ticks: no pool checkout or ping per transaction.

        The publishing connection commits asynchronously: losing its last commits in a
        PostgreSQL crash only sends a run again under the same id, which workers drop
        (invariant 3), while planning commits are durable before anything is published.
        """
        connection = self._connections.get(role)
        if connection is None or connection.closed:
            connection = self._engine.connect()
            if role == "publish":
                connection.exec_driver_sql("SET synchronous_commit = off")
                connection.commit()
            self._connections[role] = connection
        return connection

    # --- planning ---------------------------------------------------------------------------

    def _plan_batch(self, templates: Templates, report: TickReport) -> bool:
        """Plan one batch; True if more may be due (a full batch, or a catch-up to go on)."""
        phases = report.phases
        db = self._connection("plan")
        with db.begin():
            now = self._clock()
            with timed(phases, "plan_claim"):
                due = planning.claim_due_schedules(db, now=now, limit=self.batch_size)
            if not due:
                return False
            with timed(phases, "decide"):
                claimed, advances = self._decide(db, due, templates, now=now)
            with timed(phases, "plan_record"):
                replaced = self._replace(db, claimed, now=now)
                runs = [run for c in claimed for run in c.plan.runs]
                advances += [c.plan.advance for c in claimed if c.plan.advance is not None]
                recorded = planning.record_plans(db, runs, advances, now=now)
                db.commit()
        report.claimed += len(due)
        report.planned += recorded.planned
        report.finished_at_birth += recorded.born - recorded.planned
        report.cancelled += len(replaced)
        self._revoke(replaced)
        report.pruned += self._prune(claimed)
        behind = any(a.next_due_at is not None and a.next_due_at <= now for a in advances)
        return len(due) == self.batch_size or behind

    def _decide(
        self, db: Any, due: list[plans.DueSchedule], templates: Templates, *, now: datetime
    ) -> tuple[list[_Claimed], list[plans.Advance]]:
        """Plans of the readable schedules, and a stop for each unreadable one."""
        parsed = [(d, self._read(d)) for d in due]
        forbid = [d.id for d, r in parsed if r and r[0].concurrency_policy == "Forbid"]
        busy = {schedule_id for _, schedule_id, _ in planning.busy_runs(db, forbid)}
        claimed, stopped = [], []
        for d, read in parsed:
            if read is None:  # stop planning it rather than claim it again every tick
                stopped.append(plans.Advance(d.id, None, None, d.planned_count, None))
                continue
            spec, recurrence = read
            plan = plans.decide(d, spec, recurrence, now=now, busy=d.id in busy)
            if plan.jumped:
                log.warning(
                    "schedule %s/%s was down for more than %d occurrences; "
                    "the ones in between were not recorded (missedRuns: %s)",
                    *(d.namespace, d.name, plans.CATCH_UP_PER_TICK, spec.missed_runs),
                )
            templates[d.id, d.spec_hash] = self._runs.template(d.id, d.namespace, d.name, spec)
            claimed.append(_Claimed(d, spec, plan))
        return claimed, stopped

    def _read(self, due: plans.DueSchedule) -> tuple[ScheduleSpec, Recurrence] | None:
        try:
            spec = ScheduleSpec.model_validate_json(due.spec_json)
            return spec, recurrence_of(spec, seed=str(due.id), created_at=due.created_at)
        except ValueError as error:
            log.error(  # noqa: TRY400 (a data problem, not a bug: no traceback)
                "schedule %s/%s has a stored spec beatkeeper cannot plan (%s); "
                "it is stopped until it is applied again",
                *(due.namespace, due.name, " ".join(str(error).split())),
            )
            return None

    def _replace(self, db: Any, claimed: list[_Claimed], *, now: datetime) -> list[uuid.UUID]:
        """Cancel the unfinished runs of Replace schedules that get a new run now."""
        replacing = [
            c.due.id
            for c in claimed
            if c.spec.concurrency_policy == "Replace"
            and any(run.state is RunState.PLANNED for run in c.plan.runs)
        ]
        old = [run_id for run_id, _, _ in planning.busy_runs(db, replacing)]
        reason = "replaced by a newer run (concurrencyPolicy: Replace)"
        return transition_many(db, old, RunState.CANCELLED, now=now, error=reason)

    def _revoke(self, run_ids: list[uuid.UUID]) -> None:
        if not run_ids:
            return
        try:
            self._app.control.revoke([str(i) for i in run_ids], terminate=True)
        except Exception as error:  # noqa: BLE001 (the database already says cancelled)
            log.warning("could not ask workers to revoke %d replaced runs: %s", len(run_ids), error)

    def _prune(self, claimed: list[_Claimed]) -> int:
        keep = [
            (c.due.id, c.spec.history.succeeded, c.spec.history.failed)
            for c in claimed
            if c.plan.advance is not None
            and c.plan.advance.planned_count // PRUNE_EVERY != c.due.planned_count // PRUNE_EVERY
        ]
        if not keep:
            return 0
        db = self._connection("plan")
        with db.begin():
            return planning.prune_history(db, keep)


class Waiter:
    """Sleeps until a deadline or a NOTIFY on the schema's channel, whichever comes first.

    A dedicated autocommit connection holds the ``LISTEN``. While it cannot connect, waits
    are plain sleeps capped at a second, so a schedule change is at worst that late.
    """

    def __init__(self, engine: Engine, channel: str) -> None:
        self._conninfo = engine.url.set(drivername="postgresql").render_as_string(
            hide_password=False
        )
        self._channel = channel
        self._connection: psycopg.Connection[Any] | None = None
        self._retry_at = 0.0

    def wait(self, seconds: float) -> None:
        if seconds <= 0:
            return
        connection = self._listening()
        if connection is None:
            time.sleep(min(seconds, 1.0))
            return
        try:
            for _ in connection.notifies(timeout=seconds, stop_after=1):
                pass
            for _ in connection.notifies(timeout=0):  # a burst of changes wakes us once
                pass
        except psycopg.Error:
            self.close()

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None and not connection.closed:
            connection.close()

    def _listening(self) -> psycopg.Connection[Any] | None:
        if self._connection is not None and not self._connection.closed:
            return self._connection
        if time.monotonic() < self._retry_at:
            return None
        try:
            connection = psycopg.connect(
                self._conninfo,
                autocommit=True,
                connect_timeout=5,
                application_name="beatkeeper-beat-listen",
            )
            connection.execute(f'LISTEN "{self._channel}"')
        except psycopg.Error:
            self._retry_at = time.monotonic() + 2.0
            return None
        self._connection = connection
        return connection


class Backoff:
    """Exponential backoff with one log line per failed attempt, and one on recovery."""

    def __init__(self, first: float = 0.5, longest: float = 30.0) -> None:
        self._first = first
        self.longest = longest
        self.failures = 0

    def failed(self, problem: str) -> float:
        delay = min(self.longest, self._first * 2.0**self.failures)
        self.failures += 1
        log.warning("beat: %s; retrying in %.1fs", problem, delay)
        return delay

    def succeeded(self) -> None:
        if self.failures:
            log.warning("beat: working again after %d failed attempts", self.failures)
        self.failures = 0


class DatabaseScheduler(Scheduler):  # type: ignore[misc]
    """``celery beat -S beatkeeper_worker.beat:DatabaseScheduler``: schedules from PostgreSQL."""

    def setup_schedule(self) -> None:
        settings = settings_of(self.app)
        try:
            settings.require_database_url()
        except SettingsError as error:
            # SystemExit: Celery prints the one line and stops, no traceback.
            raise SystemExit(f"beatkeeper beat cannot start: {error}") from None
        self._engine = make_engine(settings, application_name="beatkeeper-beat", pool_size=2)
        self._publisher = Publisher(self.app)
        batch = int(self.app.conf.get("beatkeeper_beat_batch_size") or BATCH_SIZE)
        self._ticker = Ticker(self._engine, self.app, self._publisher, batch_size=batch)
        self._waiter = Waiter(self._engine, planning.channel_for(settings.db_schema))
        self._backoff = Backoff()
        self._stats_every = float(self.app.conf.get("beatkeeper_beat_stats_every") or 60)
        self._stats_at = time.monotonic() + self._stats_every
        self._totals, self._ticks = TickReport(), 0
        self._database = mask_url(settings.require_database_url())
        self._schema = settings.db_schema
        self._queue = QueueLength(settings.require_broker_url(), self.app.conf.task_default_queue)
        self._measure_at = 0.0
        self._health = BeatHealth(longest_sleep=max(self._longest_wait(), Backoff().longest))
        self._server: HealthServer | None = None
        if settings.metrics_port is not None:
            self._server = self._health.serve(settings.metrics_port)
        if self.app.conf.beat_schedule:
            log.warning("beat: beat_schedule entries are ignored; schedules come from the database")

    def tick(self, *_args: Any, **_kwargs: Any) -> float:
        """Plan and publish what is due, then wait; returns 0 as the wait is done here."""
        try:
            self._tick()
        finally:
            self._health.heartbeat.beat()  # the loop turned, whether the tick worked or not
        return 0.0

    def _tick(self) -> None:
        started = time.perf_counter()
        try:
            report = self._ticker.tick()
            wake = self._ticker.next_wake()
            self._health.reached("database")
            if report.published:
                self._health.reached("broker")
            self._measure()
        except (OperationalError, InterfaceError, DatabaseUnavailable) as error:
            self._ticker.close()
            self._waiter.close()
            problem = _database_problem(self._database, error)
            self._health.unreachable("database", problem)
            time.sleep(self._backoff.failed(problem))
            return
        except ProgrammingError as error:
            if getattr(error.orig, "sqlstate", None) != _UNDEFINED_TABLE:
                raise
            self._ticker.close()
            problem = f"schema {self._schema!r} has no beatkeeper tables: run `beatkeeper migrate`"
            self._health.unreachable("database", problem)
            time.sleep(self._backoff.failed(problem))
            return
        except self._publisher.connection_errors as error:
            problem = f"cannot publish to the broker: {error}"
            self._health.unreachable("broker", problem)
            time.sleep(self._backoff.failed(problem))
            return
        metrics.TICKS.inc()
        metrics.TICK_SECONDS.observe(time.perf_counter() - started)
        self._backoff.succeeded()
        self._account(report)
        self._waiter.wait(self._seconds_until(wake, idle=not (report.claimed or report.published)))

    def _measure(self) -> None:
        """Count the due backlog and the broker queue, at most every ``MEASURE_EVERY`` seconds."""
        now = time.monotonic()
        if now < self._measure_at:
            return
        self._measure_at = now + MEASURE_EVERY
        metrics.DUE_BACKLOG.set(self._ticker.due_backlog())
        if not self._queue.enabled:
            return
        try:
            self._queue.measure()
        except redis.RedisError as error:
            self._health.unreachable("broker", f"cannot count queue {self._queue.queue}: {error}")
        else:
            self._health.reached("broker")

    def _account(self, report: TickReport) -> None:
        """Add a tick to the totals; log them every ``beatkeeper_beat_stats_every`` seconds."""
        self._totals.add(report)
        self._ticks += 1
        now = time.monotonic()
        if now < self._stats_at:
            return
        totals = {f.name: getattr(self._totals, f.name) for f in dataclasses.fields(TickReport)}
        totals["phases"] = {name: round(s, 4) for name, s in self._totals.phases.items()}
        log.info("beat: stats %s", json.dumps({"ticks": self._ticks, **totals}))
        self._totals, self._ticks, self._stats_at = TickReport(), 0, now + self._stats_every

    def _longest_wait(self) -> float:
        return min(float(self.max_interval), IDLE_WAKE_SECONDS)

    def _seconds_until(self, wake: datetime | None, *, idle: bool) -> float:
        longest = self._longest_wait()
        if wake is None:
            return longest
        seconds = (wake - utcnow()).total_seconds()
        if seconds <= 0 and idle:
            return CONTENDED_WAIT_SECONDS  # due but held by another replica
        return max(0.0, min(seconds, longest))

    def get_schedule(self) -> dict[str, Any]:
        return {}  # schedules live in PostgreSQL; Beat never loads them all

    def set_schedule(self, schedule: dict[str, Any]) -> None:
        pass

    schedule = property(get_schedule, set_schedule)

    def sync(self) -> None:
        pass  # every change is committed as it happens

    def close(self) -> None:
        if self._server is not None:
            self._server.stop()
        self._queue.close()
        self._ticker.close()
        self._publisher.close()
        self._waiter.close()
        self._engine.dispose()

    @property
    def info(self) -> str:
        settings = settings_of(self.app)  # the banner asks a scheduler that was never set up
        database = mask_url(settings.database_url) if settings.database_url else "(not set)"
        return f"    . database -> {database} (schema {settings.db_schema})"


def _database_problem(database: str, error: Exception) -> str:
    if isinstance(error, DatabaseUnavailable):
        return str(error)
    reason = str(getattr(error, "orig", error)).strip().splitlines()
    return f"lost PostgreSQL at {database}: {reason[0] if reason else type(error).__name__}"
