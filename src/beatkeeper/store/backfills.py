"""Backfills: plan a run for every occurrence of a schedule in a window, each at most once.

What `beatkeeper backfill` and the ``beatkeeper.io/backfill`` annotation do to the store.
``occurrences_between`` lists a window's occurrences (refusing a window of more than
``MAX_BACKFILL``, whole, rather than cutting it short), ``already_planned`` says which have
a run (for a dry run), and ``backfill`` plans the rest: ``ON CONFLICT DO NOTHING`` on the
run key makes a repeated or overlapping backfill plan nothing twice.

Functions take a Connection inside the caller's transaction and never commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import Connection, select

from beatkeeper.store.lookups import RefusedError, ScheduleRef
from beatkeeper.store.models import RunOrigin, runs
from beatkeeper.store.notifications import notify
from beatkeeper.store.runs import insert_runs

__all__ = ["MAX_BACKFILL", "already_planned", "backfill", "occurrences_between"]

#: The most occurrences one backfill plans, from the CLI or the ``beatkeeper.io/backfill``
#: annotation alike: a window wider than this is refused whole, not cut short.
MAX_BACKFILL = 1000
_TICK = timedelta(microseconds=1)


def occurrences_between(
    schedule: ScheduleRef, start: datetime, end: datetime, *, limit: int
) -> list[datetime]:
    """Every occurrence in ``[start, end]``; ``RefusedError`` if there are more than ``limit``."""
    if end < start:
        raise RefusedError(f"the window ends ({end.isoformat()}) before it starts")
    recurrence = schedule.recurrence(back_to=start)
    found: list[datetime] = []
    moment = recurrence.next_after(start - _TICK)
    while moment is not None and moment <= end:
        if len(found) == limit:
            raise RefusedError(
                f"{schedule.key} has more than {limit} occurrences in that window; "
                "backfill a shorter one at a time"
            )
        found.append(moment)
        moment = recurrence.next_after(moment)
    return found


def backfill(
    db: Connection, schedule: ScheduleRef, planned: Sequence[datetime], *, now: datetime
) -> int:
    """Plan a run (origin ``backfill``) at each instant not planned yet; how many were new.

    Each run is due at its planned time plus the schedule's jitter, or at ``now`` when that
    has passed: a backfilled run is asked for now, so its ``startingDeadline`` and
    ``expires`` count from when it was backfilled, not from its planned time (which would
    make every past one ``missed`` at once). Future ones wait for their time.
    ``ON CONFLICT DO NOTHING`` on the run key makes a repeated or overlapping backfill plan
    nothing twice.
    """
    if not planned:
        return 0
    recurrence = schedule.recurrence()
    rows = [
        {
            "schedule_id": schedule.id,
            "planned_at": moment,
            "due_at": max(moment + recurrence.jitter_for(moment), now),
            "task": schedule.task,
            "max_attempts": schedule.spec.retry.max_attempts,
            "origin": RunOrigin.BACKFILL.value,
            "created_at": now,
            "updated_at": now,
        }
        for moment in planned
    ]
    inserted = len(insert_runs(db, rows))
    if inserted:
        notify(db, str(schedule.id))
    return inserted


def already_planned(
    db: Connection, schedule: ScheduleRef, planned: Sequence[datetime]
) -> set[datetime]:
    """Which of the instants ``planned`` already have a run of ``schedule``."""
    if not planned:
        return set()
    rows = db.execute(
        select(runs.c.planned_at).where(
            runs.c.schedule_id == schedule.id,
            runs.c.planned_at >= min(planned),
            runs.c.planned_at <= max(planned),
        )
    )
    wanted = set(planned)
    return {row.planned_at for row in rows if row.planned_at in wanted}
