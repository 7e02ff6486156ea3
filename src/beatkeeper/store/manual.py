"""A manual run asked for by a token, planned at most once per token.

The operator turns the annotation ``beatkeeper.io/trigger: <token>`` into a run. It sees
the same annotation again on every update and after every restart, so the run's id is
derived from the schedule and the token (``uuid5``): a token already planned finds its run
and plans nothing. Otherwise the run is like ``history.trigger``'s: origin ``manual``, due
now, published by Beat, woken by ``NOTIFY``.

Functions take a Connection inside the caller's transaction and never commit. This module
must not decide anything beyond what the token asked for.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import Connection, select
from sqlalchemy.dialects.postgresql import insert

from beatkeeper.store.history import ScheduleRef
from beatkeeper.store.models import RunOrigin, runs
from beatkeeper.store.planning import notify

__all__ = ["token_run_id", "trigger_once"]

_TICK = timedelta(microseconds=1)


def token_run_id(schedule_id: uuid.UUID, token: str) -> uuid.UUID:
    """The id of the run that ``token`` asks for on this schedule."""
    return uuid.uuid5(schedule_id, f"trigger/{token}")


def trigger_once(
    db: Connection, schedule: ScheduleRef, *, token: str, now: datetime
) -> uuid.UUID | None:
    """Plan the run of ``token`` due now; None when that token was planned before."""
    run_id = token_run_id(schedule.id, token)
    planned = now
    while True:
        inserted = db.execute(
            insert(runs)
            .values(
                id=run_id,
                schedule_id=schedule.id,
                planned_at=planned,
                due_at=now,
                task=schedule.task,
                max_attempts=schedule.spec.retry.max_attempts,
                origin=RunOrigin.MANUAL.value,
                created_at=now,
                updated_at=now,
            )
            .on_conflict_do_nothing()
            .returning(runs.c.id)
        ).first()
        if inserted is not None:
            notify(db, str(schedule.id))
            return run_id
        if db.execute(select(runs.c.id).where(runs.c.id == run_id)).first() is not None:
            return None
        # Another run holds this instant (schedule, planned_at): take the next microsecond.
        planned += _TICK
