"""Schedules and runs found by what people type: a name, a run id or its first characters.

The reads behind `beatkeeper runs`, `smoke` and `dev`, and the look-ups every request
(``requests``, ``backfills``) starts from. A schedule is found as a ``ScheduleRef``, which
carries what planning a run of it needs; a run as a ``RunView``, as it is listed.

Functions take a Connection inside the caller's transaction and only read; they raise
``NotFoundError`` or ``RefusedError`` with a message fit for a person.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, Text, cast, func, select

from beatkeeper.recurrence import Recurrence
from beatkeeper.spec import ScheduleSpec, recurrence_of
from beatkeeper.states import RunState
from beatkeeper.store.models import runs, schedules
from beatkeeper.store.recording import owner_display

__all__ = [
    "NotFoundError",
    "RefusedError",
    "RunView",
    "ScheduleRef",
    "ever_existed",
    "find_run_id",
    "find_schedule",
    "latest_run",
    "list_runs",
    "live_queues",
    "schedule_ref",
]


#: ``namespace/name`` of a run's schedule, as a run is listed.
_KEY = func.concat(schedules.c.namespace, "/", schedules.c.name).label("schedule")


class NotFoundError(LookupError):
    """No such schedule or run; the message names what was looked for."""


class RefusedError(ValueError):
    """The request cannot be done to this run or schedule; the message says why."""


@dataclass(frozen=True)
class RunView:
    """One run as listed: its key, where it got to, and when each step happened."""

    id: uuid.UUID
    schedule: str  # namespace/name
    planned_at: datetime
    due_at: datetime
    state: str
    origin: str
    attempt: int
    max_attempts: int
    enqueued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    worker: str | None  # who runs or ran it: worker name (pid N, session T)
    result: str | None
    error: str | None
    replay_of: uuid.UUID | None


@dataclass(frozen=True)
class ScheduleRef:
    """A live schedule, with what planning a run of it needs."""

    id: uuid.UUID
    namespace: str
    name: str
    task: str
    spec: ScheduleSpec
    created_at: datetime

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def recurrence(self, *, back_to: datetime | None = None) -> Recurrence:
        """Its occurrences; ``back_to`` reaches before its creation where that is defined.

        Without a ``startTime`` a schedule starts at its creation. A cron expression means
        the same before that, and an interval keeps its phase when extended backwards by
        whole intervals; an RRULE's DTSTART and an ``at`` are the schedule itself, so those
        keep their own start.
        """
        created = self.created_at
        spec = self.spec
        if back_to is not None and back_to < created and spec.start_time is None:
            if spec.cron is not None:
                created = back_to
            elif spec.interval is not None:
                created -= spec.interval * math.ceil((created - back_to) / spec.interval)
        return recurrence_of(spec, seed=str(self.id), created_at=created)


def list_runs(
    db: Connection,
    *,
    namespace: str | None = None,
    name: str | None = None,
    states: Iterable[RunState] = (),
    since: datetime | None = None,
    limit: int = 100,
) -> list[RunView]:
    """The newest runs first (by planned time), of every schedule or of one name.

    A name matches deleted schedules too: their history is kept.
    """
    query = select(runs, _KEY).join(schedules, schedules.c.id == runs.c.schedule_id)
    if namespace is not None:
        query = query.where(schedules.c.namespace == namespace)
    if name is not None:
        query = query.where(schedules.c.name == name)
    if wanted := sorted(state.value for state in states):
        query = query.where(runs.c.state.in_(wanted))
    if since is not None:
        query = query.where(runs.c.planned_at >= since)
    query = query.order_by(runs.c.planned_at.desc(), runs.c.id).limit(limit)
    return [_view(row) for row in db.execute(query)]


def latest_run(db: Connection, schedule_id: uuid.UUID) -> RunView | None:
    """The schedule's run with the latest planned time, if it has any."""
    row = db.execute(
        select(runs, _KEY)
        .join(schedules, schedules.c.id == runs.c.schedule_id)
        .where(runs.c.schedule_id == schedule_id)
        .order_by(runs.c.planned_at.desc())
        .limit(1)
    ).first()
    return None if row is None else _view(row)


def ever_existed(db: Connection, namespace: str, name: str) -> bool:
    """Whether a schedule ``namespace/name`` exists or did (deleted ones keep their runs)."""
    found = select(schedules.c.id).where(
        schedules.c.namespace == namespace, schedules.c.name == name
    )
    return db.execute(found.limit(1)).first() is not None


def find_schedule(db: Connection, namespace: str, name: str) -> ScheduleRef:
    """The live schedule ``namespace/name``, or ``NotFoundError``."""
    row = db.execute(
        select(schedules).where(
            schedules.c.namespace == namespace,
            schedules.c.name == name,
            schedules.c.deleted_at.is_(None),
        )
    ).first()
    if row is None:
        raise NotFoundError(f"no schedule {namespace}/{name}")
    return schedule_ref(row)


def find_run_id(db: Connection, prefix: str, *, schedule_id: uuid.UUID | None = None) -> uuid.UUID:
    """The run whose id is or starts with ``prefix`` (lower-case, as UUIDs are printed).

    With ``schedule_id``, only that schedule's runs are looked at.
    """
    try:
        whole = uuid.UUID(prefix)
    except ValueError:
        query = select(runs.c.id).where(cast(runs.c.id, Text).startswith(prefix, autoescape=True))
    else:
        if schedule_id is None:
            return whole
        query = select(runs.c.id).where(runs.c.id == whole)
    if schedule_id is not None:
        query = query.where(runs.c.schedule_id == schedule_id)
    found = db.execute(query.limit(2)).scalars()
    matches: list[uuid.UUID] = list(found)
    if not matches:
        raise NotFoundError(f"no run id starts with {prefix}")
    if len(matches) > 1:
        raise RefusedError(f"more than one run id starts with {prefix}: give more characters")
    return matches[0]


def live_queues(db: Connection) -> list[str]:
    """The queues live schedules name (the default queue, empty, left out), sorted."""
    query = (
        select(schedules.c.queue)
        .where(schedules.c.deleted_at.is_(None), schedules.c.queue != "")
        .distinct()
    )
    return sorted(db.execute(query).scalars())


def schedule_ref(row: Row[Any]) -> ScheduleRef:
    """The ``ScheduleRef`` of a row of ``schedules`` (for the store's other modules)."""
    return ScheduleRef(
        id=row.id,
        namespace=row.namespace,
        name=row.name,
        task=row.task,
        spec=ScheduleSpec.model_validate(row.spec),
        created_at=row.created_at,
    )


def _view(row: Row[Any]) -> RunView:
    fields = dict(row._mapping)
    owner = (fields["worker"], fields["worker_pid"], fields["worker_session"])
    fields["worker"] = owner_display(*owner)
    return RunView(**{name: fields[name] for name in RunView.__dataclass_fields__})
