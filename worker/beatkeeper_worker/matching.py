"""Whether a message is what its run row says it is: the row is believed, never the message.

A run's message names the run by its task id and carries the task name, the schedule id and
``namespace/name`` in its headers. Anyone who can write to the broker can forge one, and a
stale or misrouted copy can name the right run with the wrong task. So a worker runs a body,
and records a failure it did not run, only for a message whose task, schedule id and
schedule name are those of the run row; and it starts a ``planned`` or ``retrying`` run only
once that run is due (Beat publishes nothing earlier; a minute of slack covers clocks that
disagree). The claim statement checks the same on the hot path (``statements``:
``MESSAGE_MATCHES_ROW``); this module reads a row and says why a message does not match it.

This module reads; it must not write or talk to Celery.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    DateTime,
    bindparam,
    exists,
    literal_column,
    select,
)

from beatkeeper.states import RunState
from beatkeeper.store.models import runs, schedules

__all__ = [
    "MESSAGE_MATCHES_ROW",
    "MESSAGE_MATCH_FIELDS",
    "Message",
    "RunRow",
    "mismatch",
    "read_run",
]

#: Before this, a run that waits to be published cannot have a genuine message.
_DUE_BY = literal_column(
    "statement_timestamp() + interval '1 minute'", type_=DateTime(timezone=True)
)
_WAITING = (RunState.PLANNED.value, RunState.RETRYING.value)

MESSAGE_MATCHES_ROW: ColumnElement[bool] = (
    (runs.c.task == bindparam("task", None))
    & (runs.c.schedule_id == bindparam("schedule_id", None))
    & exists().where(
        schedules.c.id == runs.c.schedule_id,
        schedules.c.namespace == bindparam("namespace", None),
        schedules.c.name == bindparam("name", None),
    )
    & (runs.c.state.not_in(_WAITING) | (runs.c.due_at <= _DUE_BY))
)
"""The claim's condition that the message is its run's; parameters ``MESSAGE_MATCH_FIELDS``."""
MESSAGE_MATCH_FIELDS = ("task", "schedule_id", "namespace", "name")


@dataclass(frozen=True)
class Message:
    """What a message says about its run."""

    run_id: uuid.UUID
    task: str
    schedule_id: uuid.UUID
    schedule: str  # namespace/name

    def described(self) -> str:
        return f"message for run {self.run_id} (task {self.task}, schedule {self.schedule})"


@dataclass(frozen=True)
class RunRow:
    """The run as recorded, with its schedule's name."""

    state: str
    task: str
    schedule_id: uuid.UUID
    schedule: str
    worker: str | None
    worker_losses: int
    due_at: datetime
    early: bool  # waiting to be published, and not due yet


def read_run(db: Connection, run_id: uuid.UUID, *, for_update: bool = False) -> RunRow | None:
    """The run row ``run_id`` and its schedule's ``namespace/name``; ``None``: no such run."""
    query = (
        select(
            runs.c.state,
            runs.c.task,
            runs.c.schedule_id,
            runs.c.worker,
            runs.c.worker_losses,
            schedules.c.namespace,
            schedules.c.name,
            runs.c.due_at,
            (runs.c.state.in_(_WAITING) & (runs.c.due_at > _DUE_BY)).label("early"),
        )
        .join(schedules, schedules.c.id == runs.c.schedule_id)
        .where(runs.c.id == run_id)
    )
    if for_update:
        query = query.with_for_update(of=runs)
    row: Any = db.execute(query).first()
    if row is None:
        return None
    schedule = f"{row.namespace}/{row.name}"
    return RunRow(
        row.state,
        row.task,
        row.schedule_id,
        schedule,
        row.worker,
        row.worker_losses,
        row.due_at,
        bool(row.early),
    )


def mismatch(message: Message, row: RunRow) -> str | None:
    """Why ``message`` is not a message of ``row``; ``None`` when it is."""
    if message.task != row.task:
        return f"the run is task {row.task}"
    if message.schedule_id != row.schedule_id or message.schedule != row.schedule:
        return f"the run belongs to schedule {row.schedule} ({row.schedule_id})"
    if row.early:
        return f"the run is {row.state}, due at {row.due_at.isoformat()}: not published yet"
    return None
