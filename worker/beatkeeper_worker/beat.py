"""Celery Beat that schedules from PostgreSQL, for any number of replicas at once.

Run it the Celery way::

    celery -A beatkeeper_worker beat -S beatkeeper_worker.beat:DatabaseScheduler

``DatabaseScheduler`` is what Celery's Beat loop drives: each turn runs one tick
(``beatkeeper_worker.tick``: plan what is due, publish it), then waits
(``beatkeeper.store.notifications.Listener``) until the next due instant, or until a
``NOTIFY`` says a schedule changed, whichever comes first; it never polls on a fixed period.

A database or broker that cannot be reached is logged in one line and retried with
exponential backoff; nothing planned is lost meanwhile (committed runs are published once
the broker is back, due schedules are planned once the database is). This module plans and
publishes nothing itself: it sets the parts up, keeps Beat's health and stats, and turns
errors a user can cause into one line.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import logging
import time
from datetime import datetime
from typing import Any

from celery.beat import Scheduler

from beatkeeper.observability import metrics
from beatkeeper.observability.http import HealthServer
from beatkeeper.policy import PolicyError, load_policy
from beatkeeper.settings import SettingsError, mask_url
from beatkeeper.store import DatabaseUnavailable, SchemaMissing, make_engine
from beatkeeper.store.notifications import Listener, channel_for
from beatkeeper_worker import brokers
from beatkeeper_worker.app import settings_of
from beatkeeper_worker.health import BeatHealth
from beatkeeper_worker.tick import BATCH_SIZE, Ticker, TickReport, utcnow
from beatkeeper_worker.waiting import Backoff

__all__ = ["DatabaseScheduler", "stats_level"]

log = logging.getLogger(__name__)

IDLE_WAKE_SECONDS = 60.0  # a safety net under LISTEN/NOTIFY, not a poll
CONTENDED_WAIT_SECONDS = 0.01  # what is due is held by another replica for a moment
MEASURE_EVERY = 5.0  # count the due backlog and the queue at most this often


def stats_level(asked_every: object) -> int:
    """Beat's stats line is at INFO only when ``beatkeeper_beat_stats_every`` asks for it (a
    benchmark reads them): the metrics carry the same figures, and a line a minute drowns
    what matters in a console."""
    return logging.INFO if asked_every else logging.DEBUG


class DatabaseScheduler(Scheduler):  # type: ignore[misc]
    """``celery beat -S beatkeeper_worker.beat:DatabaseScheduler``: schedules from PostgreSQL."""

    def setup_schedule(self) -> None:
        settings = settings_of(self.app)
        try:
            settings.require_database_url()
            policy = load_policy(settings.policy_file)
            self._broker = brokers.for_app(self.app)
        except (SettingsError, PolicyError) as error:
            # SystemExit: Celery prints the one line and stops, no traceback.
            raise SystemExit(f"beatkeeper beat cannot start: {error}") from None
        self._engine = make_engine(settings, application_name="beatkeeper-beat", pool_size=2)
        batch = int(self.app.conf.get("beatkeeper_beat_batch_size") or BATCH_SIZE)
        self._ticker = Ticker(
            self._engine,
            self.app,
            self._broker,
            batch_size=batch,
            redeliver_after=settings.redeliver_after,
            queue_is_empty=self._broker.is_empty if self._broker.loses_messages else None,
            policy=policy,
        )
        self._waiter = Listener(self._engine, channel_for(settings.db_schema))
        self._backoff = Backoff()
        asked = self.app.conf.get("beatkeeper_beat_stats_every")
        self._stats_every = float(asked or 60)
        self._stats_level = stats_level(asked)
        self._stats_at = time.monotonic() + self._stats_every
        self._totals, self._ticks = TickReport(), 0
        self._queue: str = self.app.conf.task_default_queue
        self._measure_at = 0.0
        self._health = BeatHealth(longest_sleep=max(self._longest_wait(), Backoff().longest))
        self._server: HealthServer | None = None
        if settings.metrics_port is not None:
            metrics.label_schedules(
                settings.metrics_schedule_labels, settings.metrics_schedule_limit
            )
            self._server = self._health.serve(settings.metrics_port)
        if self.app.conf.beat_schedule:
            log.warning("beat: beat_schedule entries are ignored; schedules come from the database")
        _freeze_what_exists()

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
        except DatabaseUnavailable as error:  # SchemaMissing too: the server still answers
            self._ticker.close()
            if not isinstance(error, SchemaMissing):
                self._waiter.close()
            self._health.unreachable("database", str(error))
            time.sleep(self._backoff.failed(str(error)))
            return
        except brokers.BrokerUnavailable as error:
            problem = str(error)
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
        due = self._ticker.due_backlog()
        metrics.DUE_BACKLOG.set(due.ready)
        metrics.HELD_RUNS.labels("queue").set(due.queued)
        metrics.HELD_RUNS.labels("rateLimit").set(due.rate_limited)
        try:
            length = self._broker.queue_length(self._queue)
        except brokers.BrokerUnavailable as error:
            self._health.unreachable("broker", str(error))
        else:
            metrics.QUEUE_LENGTH.labels(self._queue).set(length)
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
        log.log(self._stats_level, "beat: stats %s", json.dumps({"ticks": self._ticks, **totals}))
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
        self._ticker.close()
        self._broker.close()
        self._waiter.close()
        self._engine.dispose()

    @property
    def info(self) -> str:
        settings = settings_of(self.app)  # the banner asks a scheduler that was never set up
        database = mask_url(settings.database_url) if settings.database_url else "(not set)"
        return f"    . database -> {database} (schema {settings.db_schema})"


def _freeze_what_exists() -> None:
    """Keep what exists at start-up out of the cyclic garbage collector's scans, for good.

    Celery, kombu, SQLAlchemy and pydantic leave a few hundred thousand long-lived objects
    (modules, schemas, compiled statements); every full collection walked them all, 100-700
    ms on a busy 2-CPU host at 100k schedules, which was the tail of Beat's lag. Frozen, a
    full collection walks only what came later. Collected first so no garbage is frozen;
    done before the first tick, as a pause then delays nothing that is due.
    """
    gc.collect()
    gc.freeze()
