"""What a run looks like as a Celery message, both ways: the one contract between Beat and workers.

Building: ``template_for`` gathers what every message of one schedule (at one spec version)
has in common; ``message_for`` builds the message of one attempt of one run with Celery's
own ``app.amqp.as_task_v2`` (protocol 2, so any standard worker accepts it), the run id as
task id, and the ``HEADERS`` (``run_headers``). Reading: ``delivery_of`` turns the request
of a task being executed into a ``Delivery``; ``message_of_headers`` reads the headers of a
message no pool process runs. A message without the headers is not a run.

This module only builds and reads messages: it sends nothing and reads no database.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from celery import Celery

from beatkeeper.decisions.ownership import Message
from beatkeeper.spec import ScheduleSpec

__all__ = [
    "ATTEMPT",
    "HEADERS",
    "HEADER_PREFIX",
    "MAX_ATTEMPTS",
    "PLANNED_AT",
    "SCHEDULE",
    "SCHEDULE_ID",
    "Delivery",
    "Outgoing",
    "Template",
    "delivery_of",
    "is_run",
    "message_for",
    "message_of_headers",
    "run_headers",
    "template_for",
]

HEADER_PREFIX = "beatkeeper_"
SCHEDULE = f"{HEADER_PREFIX}schedule"  # namespace/name
SCHEDULE_ID = f"{HEADER_PREFIX}schedule_id"
PLANNED_AT = f"{HEADER_PREFIX}planned_at"  # ISO 8601, UTC
ATTEMPT = f"{HEADER_PREFIX}attempt"  # from 1
MAX_ATTEMPTS = f"{HEADER_PREFIX}max_attempts"
HEADERS = (SCHEDULE, SCHEDULE_ID, PLANNED_AT, ATTEMPT, MAX_ATTEMPTS)
"""The headers that mark a message as a run, besides the run id as task id."""
_REPR_MAX = 1024


def run_headers(
    *,
    schedule: str,
    schedule_id: uuid.UUID | str,
    planned_at: datetime,
    attempt: int,
    max_attempts: int,
) -> dict[str, str | int]:
    """The headers of one attempt of one run (``schedule`` is ``namespace/name``)."""
    return {
        SCHEDULE: schedule,
        SCHEDULE_ID: str(schedule_id),
        PLANNED_AT: planned_at.astimezone(UTC).isoformat(),
        ATTEMPT: attempt,
        MAX_ATTEMPTS: max_attempts,
    }


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
        run_headers(
            schedule=template.schedule,
            schedule_id=template.schedule_id,
            planned_at=planned_at,
            attempt=attempt,
            max_attempts=max_attempts,
        )
    )
    if template.priority is not None:
        properties["priority"] = template.priority
    if expires_at is not None:
        # What Celery's send_task does too: the broker may drop it once it is stale.
        properties["expiration"] = max(0.0, (expires_at - now).total_seconds())
    return Outgoing(template.queue, body, headers, properties)


# -- reading ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Delivery:
    """One message for a run, as the request of the task being executed carried it."""

    run_id: uuid.UUID
    schedule: str  # namespace/name
    schedule_id: uuid.UUID
    hostname: str | None  # the worker's name
    redelivered: bool
    planned_at: str | None = None
    attempt: int | None = None
    task: str = dataclasses.field(kw_only=True)  # the task name the message carries

    def message(self) -> Message:
        return Message(self.run_id, self.task, self.schedule_id, self.schedule)

    def at(self) -> tuple[uuid.UUID, str]:
        """The run and its schedule, for log lines ``run %s of %s``."""
        return self.run_id, self.schedule


def is_run(request: Any) -> bool:
    """Whether the request of a task being executed carries a run's headers."""
    return getattr(request, SCHEDULE_ID, None) is not None


def delivery_of(request: Any, task: str) -> Delivery:
    """The run a task request carries (check ``is_run`` first)."""
    return Delivery(
        run_id=uuid.UUID(request.id),
        schedule=getattr(request, SCHEDULE),
        schedule_id=uuid.UUID(getattr(request, SCHEDULE_ID)),
        hostname=request.hostname,
        redelivered=bool((request.delivery_info or {}).get("redelivered")),
        planned_at=getattr(request, PLANNED_AT, None),
        attempt=getattr(request, ATTEMPT, None),
        task=task,
    )


def message_of_headers(headers: Mapping[str, Any]) -> Message | None:
    """What a message's protocol 2 headers say about its run; ``None``: it is not a run's.

    Raises ``KeyError`` or ``ValueError`` for a run's headers that are malformed.
    """
    if headers.get(SCHEDULE_ID) is None:
        return None
    return Message(
        run_id=uuid.UUID(str(headers["id"])),
        task=str(headers.get("task")),
        schedule_id=uuid.UUID(str(headers[SCHEDULE_ID])),
        schedule=str(headers.get(SCHEDULE)),
    )
