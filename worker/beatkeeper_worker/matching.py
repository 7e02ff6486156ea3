"""Whether a message is what its run row says it is: the row is believed, never the message.

A run's message names the run by its task id and carries the task name, the schedule id and
``namespace/name`` in its headers. Anyone who can write to the broker can forge one, and a
stale or misrouted copy can name the right run with the wrong task. So a worker runs a body,
and records a failure it did not run, only for a message whose task, schedule id and
schedule name are those of the run row. The claim statement checks the same three on the hot
path (``statements``); this module reads a row and says why a message does not match it.

This module reads; it must not write or talk to Celery.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select

from beatkeeper.store.models import runs, schedules

__all__ = ["Message", "RunRow", "mismatch", "read_run"]


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
    return RunRow(row.state, row.task, row.schedule_id, schedule, row.worker, row.worker_losses)


def mismatch(message: Message, row: RunRow) -> str | None:
    """Why ``message`` is not a message of ``row``; ``None`` when it is."""
    if message.task != row.task:
        return f"the run is task {row.task}"
    if message.schedule_id != row.schedule_id or message.schedule != row.schedule:
        return f"the run belongs to schedule {row.schedule} ({row.schedule_id})"
    return None
