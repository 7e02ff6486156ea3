"""What a run looks like as a Celery message: one template per schedule, one message per attempt.

``template_for`` gathers what every message of one schedule (at one spec version) has in
common; ``message_for`` builds the message of one attempt of one run with Celery's own
``app.amqp.as_task_v2`` (protocol 2, so any standard worker accepts it), the run id as task
id, and the ``beatkeeper_*`` headers run tracking reads.

This module only builds messages: it sends nothing and reads no database.
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from celery import Celery

from beatkeeper.spec import ScheduleSpec

__all__ = ["HEADER_PREFIX", "Outgoing", "Template", "message_for", "template_for"]

HEADER_PREFIX = "beatkeeper_"
_REPR_MAX = 1024


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
