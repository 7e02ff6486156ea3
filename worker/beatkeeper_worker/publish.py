"""The publishing half of a Beat tick: due runs become Celery messages, many per round trip.

``RunPublisher.publish_due`` locks due ``planned`` and ``retrying`` runs (``FOR UPDATE SKIP
LOCKED``), sends them and marks them ``enqueued`` before the lock is released, so a run is
published by exactly one replica; a run whose publisher died is unlocked and still due, and
the next tick of any replica publishes it. A run found too late for its ``startingDeadline``
or ``expires`` is recorded ``missed`` or ``expired`` instead of being sent.

A message is built by Celery's own ``app.amqp.as_task_v2`` (protocol 2, so any standard
worker accepts it) with the run id as task id, and sent through one reused kombu producer
inside ``Producer.batch()``: on Redis that is one pipelined round trip per batch instead of
one per message, which is most of the difference from ``apply_async`` in a loop.

Messages go to the default exchange with the queue name as routing key. On Redis that is a
plain ``LPUSH`` onto the queue's list, skipping the per-message binding lookup (``SMEMBERS``)
a named exchange costs; on AMQP the default exchange delivers to the queue of that name. The
queue is declared once per connection the way Celery declares a missing queue, so a worker
started later finds the same queue.

This module plans nothing: which runs exist is ``beatkeeper.store.planning``'s business.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import logging
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from celery import Celery
from celery.utils.nodenames import anon_nodename
from kombu import common, exceptions, messaging
from sqlalchemy import Connection

from beatkeeper.observability import metrics
from beatkeeper.spec import ScheduleSpec
from beatkeeper.states import RunState
from beatkeeper.store import planning, transition_many

__all__ = [
    "HEADER_PREFIX",
    "Outgoing",
    "Phases",
    "Published",
    "Publisher",
    "RunPublisher",
    "Template",
    "Templates",
    "message_for",
    "template_for",
    "timed",
]

HEADER_PREFIX = "beatkeeper_"
_REPR_MAX = 1024
BATCH_MAX = 1000
#: Bound how long a black-holed broker can stall a tick (Beat holds row locks meanwhile).
SOCKET_TIMEOUT_SECONDS = 10.0

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Template:
    """What every message of one schedule (at one spec version) has in common."""

    schedule: str  # namespace/name
    schedule_id: str
    args: list[Any]
    kwargs: dict[str, Any]
    argsrepr: str
    kwargsrepr: str
    queue: str
    priority: int | None
    expires: timedelta | None
    starting_deadline: timedelta | None
    time_limit: float | None
    soft_time_limit: float | None


def template_for(
    schedule_id: uuid.UUID, namespace: str, name: str, spec: ScheduleSpec, *, default_queue: str
) -> Template:
    return Template(
        schedule=f"{namespace}/{name}",
        schedule_id=str(schedule_id),
        args=list(spec.args),
        kwargs=dict(spec.kwargs),
        # Plain repr: the arguments are JSON (no cycles, bounded size), and Celery's
        # saferepr cost more than everything else in a message put together.
        argsrepr=repr(spec.args)[:_REPR_MAX],
        kwargsrepr=repr(spec.kwargs)[:_REPR_MAX],
        queue=spec.queue or default_queue,
        priority=spec.priority,
        expires=spec.expires,
        starting_deadline=spec.starting_deadline,
        time_limit=_seconds(spec.time_limit),
        soft_time_limit=_seconds(spec.soft_time_limit),
    )


def _seconds(value: timedelta | None) -> float | None:
    return None if value is None else value.total_seconds()


@dataclasses.dataclass(frozen=True)
class Outgoing:
    """One message ready for ``Producer.publish``."""

    queue: str
    body: tuple[Any, ...]
    headers: dict[str, Any]
    properties: dict[str, Any]


def message_for(
    app: Celery,
    *,
    run_id: uuid.UUID,
    task: str,
    planned_at: datetime,
    due_at: datetime,
    attempt: int,
    max_attempts: int,
    template: Template,
    now: datetime,
    origin: str,
) -> Outgoing:
    """The Celery message of one attempt of one run; ``expires`` counts from ``due_at``."""
    task_id = str(run_id)
    expires_at = None if template.expires is None else due_at + template.expires
    headers, properties, body, _ = app.amqp.as_task_v2(
        task_id,
        task,
        args=template.args,
        kwargs=template.kwargs,
        expires=expires_at,
        retries=attempt - 1,
        time_limit=template.time_limit,
        soft_time_limit=template.soft_time_limit,
        origin=origin,
        argsrepr=template.argsrepr,
        kwargsrepr=template.kwargsrepr,
    )
    headers.update(
        {
            f"{HEADER_PREFIX}schedule": template.schedule,
            f"{HEADER_PREFIX}schedule_id": template.schedule_id,
            f"{HEADER_PREFIX}planned_at": planned_at.astimezone(UTC).isoformat(),
            f"{HEADER_PREFIX}attempt": attempt,
            f"{HEADER_PREFIX}max_attempts": max_attempts,
        }
    )
    if template.priority is not None:
        properties["priority"] = template.priority
    if expires_at is not None:
        # What Celery's send_task does too: the broker may drop it once it is stale.
        properties["expiration"] = max(0.0, (expires_at - now).total_seconds())
    return Outgoing(template.queue, body, headers, properties)


class Publisher:
    """One broker connection and producer, reused across ticks and rebuilt after an error."""

    def __init__(self, app: Celery) -> None:
        self._app = app
        self._connection: Any = None  # kombu.Connection (kombu is partly typed)
        self._producer: Any = None
        self.origin = anon_nodename()

    def publish(self, messages: Sequence[Outgoing]) -> None:
        """Send every message or raise; on error nothing is known about what arrived."""
        if not messages:
            return
        try:
            producer = self._ready_producer()
            for queue in {m.queue for m in messages}:
                common.maybe_declare(self._app.amqp.queues[queue], producer.channel)  # type: ignore[no-untyped-call]
            with producer.batch(max_size=BATCH_MAX):
                for m in messages:
                    producer.publish(
                        m.body,
                        exchange="",
                        routing_key=m.queue,
                        serializer="json",
                        headers=m.headers,
                        delivery_mode=2,
                        **m.properties,
                    )
        except BaseException:
            self.close()  # a half-broken connection is never reused
            raise

    @property
    def connection_errors(self) -> tuple[type[BaseException], ...]:
        """What the transport raises when the broker is unreachable (to retry, not crash)."""
        connection = self._connection or self._app.connection_for_write()
        errors: tuple[type[BaseException], ...] = (
            *connection.connection_errors,
            *connection.channel_errors,
            exceptions.OperationalError,  # what ensure_connection re-raises them as
            exceptions.BatchPublishError,
            OSError,
        )
        return errors

    def close(self) -> None:
        connection, self._connection, self._producer = self._connection, None, None
        if connection is not None:
            try:
                connection.collect()
            except Exception:  # closing a broken connection must not fail
                log.debug("closing the broker connection failed", exc_info=True)

    def _ready_producer(self) -> Any:
        if self._producer is None:
            options = dict(self._app.conf.broker_transport_options or {})
            connection = self._app.connection_for_write()
            if connection.transport.driver_type == "redis":
                options.setdefault("socket_timeout", SOCKET_TIMEOUT_SECONDS)
                options.setdefault("socket_connect_timeout", SOCKET_TIMEOUT_SECONDS)
                connection = self._app.connection_for_write(transport_options=options)
            connection.ensure_connection(max_retries=1)
            self._connection = connection
            self._producer = messaging.Producer(  # type: ignore[no-untyped-call]
                connection.default_channel, auto_declare=False
            )
        return self._producer


Templates = dict[tuple[uuid.UUID, str], Template]
"""Message templates by (schedule id, spec hash), kept for one tick only."""


Phases = collections.defaultdict[str, float]
"""Seconds spent per phase of a tick, for the stats log and the benchmark."""


@contextlib.contextmanager
def timed(phases: Phases, name: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        phases[name] += time.perf_counter() - started


@dataclasses.dataclass(frozen=True)
class Published:
    locked: int  # due runs this batch took
    sent: int
    dropped: int  # recorded missed, expired or cancelled instead


class RunPublisher:
    """Publishes due runs batch by batch for one Beat replica."""

    def __init__(self, app: Celery, publisher: Publisher) -> None:
        self._app = app
        self._publisher = publisher
        self._default_queue: str = app.conf.task_default_queue

    def template(
        self, schedule_id: uuid.UUID, namespace: str, name: str, spec: ScheduleSpec
    ) -> Template:
        return template_for(schedule_id, namespace, name, spec, default_queue=self._default_queue)

    def publish_due(
        self, db: Connection, templates: Templates, phases: Phases, *, now: datetime, limit: int
    ) -> Published:
        """Lock, send and mark ``enqueued`` up to ``limit`` due runs, in one transaction."""
        with db.begin():
            with timed(phases, "publish_claim"):
                runs = planning.claim_publishable_runs(db, now=now, limit=limit)
                if not runs:
                    return Published(0, 0, 0)
                self._fill(db, runs, templates)
            with timed(phases, "build"):
                outgoing, sent, dropped = self._messages(runs, templates, now=now)
            with timed(phases, "broker"):
                self._publisher.publish(outgoing)
            _observe_lag(runs, set(sent), published_at=datetime.now(UTC))
            with timed(phases, "publish_mark"):
                transition_many(db, sent, RunState.ENQUEUED, now=datetime.now(UTC))
                for state, ids in dropped.items():
                    transition_many(db, ids, state, now=now, error=_DROP_REASONS[state])
                db.commit()
        return Published(len(runs), len(sent), len(runs) - len(sent))

    def _messages(
        self, runs: list[planning.PublishableRun], templates: Templates, *, now: datetime
    ) -> tuple[list[Outgoing], list[uuid.UUID], dict[RunState, list[uuid.UUID]]]:
        outgoing: list[Outgoing] = []
        sent: list[uuid.UUID] = []
        dropped: dict[RunState, list[uuid.UUID]] = {}
        for run in runs:
            template = templates.get((run.schedule_id, run.spec_hash))
            fate = _fate(run, template, now=now)
            if fate is not None or template is None:
                dropped.setdefault(fate or RunState.CANCELLED, []).append(run.id)
                continue
            outgoing.append(self._message(run, template, now=now))
            sent.append(run.id)
        return outgoing, sent, dropped

    def _fill(self, db: Any, runs: list[planning.PublishableRun], templates: Templates) -> None:
        """Templates for runs planned by another tick (a retry, another replica's orphan)."""
        missing = {r.schedule_id: r for r in runs if (r.schedule_id, r.spec_hash) not in templates}
        for schedule_id, spec_json in planning.schedule_specs(db, list(missing)).items():
            run = missing[schedule_id]
            try:
                spec = ScheduleSpec.model_validate_json(spec_json)
            except ValueError as error:
                problem = "schedule %s/%s: stored spec unreadable: %s"
                log.error(problem, run.namespace, run.name, error)  # noqa: TRY400
                continue
            templates[schedule_id, run.spec_hash] = self.template(
                schedule_id, run.namespace, run.name, spec
            )

    def _message(
        self, run: planning.PublishableRun, template: Template, *, now: datetime
    ) -> Outgoing:
        return message_for(
            self._app,
            run_id=run.id,
            task=run.task,
            planned_at=run.planned_at,
            due_at=run.due_at,
            attempt=run.attempt,
            max_attempts=run.max_attempts,
            template=template,
            now=now,
            origin=self._publisher.origin,
        )


def _observe_lag(
    runs: list[planning.PublishableRun], sent: set[uuid.UUID], *, published_at: datetime
) -> None:
    """How late each sent run left, after its due time (``beatkeeper_scheduling_lag_seconds``)."""
    for run in runs:
        if run.id in sent:
            metrics.SCHEDULING_LAG.observe(max(0.0, (published_at - run.due_at).total_seconds()))


_DROP_REASONS = {
    RunState.MISSED: "could not start within startingDeadline",
    RunState.EXPIRED: "expires passed before it could be published",
    RunState.CANCELLED: "the schedule's stored spec cannot be read",
}


def _fate(
    run: planning.PublishableRun, template: Template | None, *, now: datetime
) -> RunState | None:
    """Why a due run is not published after all (None: publish it)."""
    if template is None:
        return RunState.CANCELLED
    if template.expires is not None and run.due_at + template.expires < now:
        return RunState.EXPIRED
    deadline = template.starting_deadline
    if run.state == RunState.PLANNED and deadline is not None and run.due_at + deadline < now:
        return RunState.MISSED
    return None
