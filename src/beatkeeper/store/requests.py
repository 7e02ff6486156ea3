"""Runs people ask for: trigger, replay, cancel, and lifting a pause.

What `beatkeeper trigger`, `runs replay` and the operator's request annotations
(``kubectl beatkeeper``) do to the store. Runs made here are born ``planned`` and due now,
with an ``origin`` saying why they exist; Beat publishes them like any other run, and a
``NOTIFY`` wakes it so it does not wait for its next scheduled tick. A replay is a new run
(``replay_of`` the old one) of the schedule's current spec: finished runs never change state
again. The ``*_once`` forms take the token of a request annotation, which the operator sees
again on every update and restart, and derive the new run's id from it, so each token plans
one run at most. Backfills are ``backfills``; finding the schedule or run is ``lookups``.

Functions take a Connection inside the caller's transaction and never commit; they raise
``lookups.NotFoundError`` or ``lookups.RefusedError`` with a message fit for a person. This
module must not print, publish or decide when runs happen beyond what a person asked for.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, select, update

from beatkeeper.states import RunState
from beatkeeper.store.lookups import NotFoundError, RefusedError, ScheduleRef, schedule_ref
from beatkeeper.store.models import RunOrigin, runs, schedules
from beatkeeper.store.notifications import notify
from beatkeeper.store.runs import insert_runs

__all__ = [
    "REPLAYABLE",
    "Replay",
    "replay",
    "replay_once",
    "resume",
    "token_run_id",
    "trigger",
    "trigger_once",
]

REPLAYABLE = frozenset({RunState.DEAD, RunState.FAILED})
_TICK = timedelta(microseconds=1)


def trigger(db: Connection, schedule: ScheduleRef, *, now: datetime) -> uuid.UUID:
    """Plan one run of ``schedule`` due now (origin ``manual``); Beat publishes it."""
    return _plan_now(db, schedule, task=schedule.task, origin=RunOrigin.MANUAL, now=now)


def token_run_id(schedule_id: uuid.UUID, token: str) -> uuid.UUID:
    """The id of the run a trigger token asks for on this schedule."""
    return uuid.uuid5(schedule_id, f"trigger/{token}")


def trigger_once(
    db: Connection, schedule: ScheduleRef, *, token: str, now: datetime
) -> uuid.UUID | None:
    """Plan the run of ``token`` due now; None when that token was planned before.

    The operator sees the annotation ``beatkeeper.io/trigger: <token>`` again on every
    update and after every restart, so the run id is derived from the schedule and the
    token (``uuid5``): a token already planned finds its run and plans nothing.
    """
    run_id = token_run_id(schedule.id, token)
    if db.execute(select(runs.c.id).where(runs.c.id == run_id)).first() is not None:
        return None
    return _plan_now(
        db, schedule, task=schedule.task, origin=RunOrigin.MANUAL, now=now, run_id=run_id
    )


@dataclass(frozen=True)
class Replay:
    """The run a replay planned, and the schedule (and its current task) it runs as."""

    run_id: uuid.UUID
    schedule: ScheduleRef


def replay(
    db: Connection, run_id: uuid.UUID, *, now: datetime, new_id: uuid.UUID | None = None
) -> Replay:
    """A new run, due now, of the schedule of the dead or failed run ``run_id``.

    It runs the schedule's *current* spec (task, arguments, queue), as every run Beat
    publishes does: the old run's task may be one the schedule, or the namespace's policy,
    no longer allows. A deleted schedule has no current spec, so its runs are not replayed.
    """
    row = db.execute(
        select(runs.c.state, schedules)
        .join(schedules, schedules.c.id == runs.c.schedule_id)
        .where(runs.c.id == run_id)
    ).first()
    if row is None:
        raise NotFoundError(f"no run {run_id}")
    if row.state not in REPLAYABLE:
        raise RefusedError(f"run {run_id} is {row.state}: only dead or failed runs are replayed")
    if row.deleted_at is not None:
        raise RefusedError(
            f"run {run_id} belongs to {row.namespace}/{row.name}, which was deleted: "
            "a replay runs the schedule's current spec, and it has none"
        )
    schedule = schedule_ref(row)
    planned = _plan_now(
        db,
        schedule,
        task=schedule.task,
        origin=RunOrigin.REPLAY,
        now=now,
        replay_of=run_id,
        run_id=new_id,
    )
    return Replay(planned, schedule)


def replay_once(db: Connection, run_id: uuid.UUID, *, token: str, now: datetime) -> Replay | None:
    """``replay`` for the request ``token``; None when that token was replayed before.

    As with ``trigger_once``, the new run's id comes from the old run and the token, so the
    operator seeing the same ``beatkeeper.io/replay`` annotation again plans nothing.
    """
    new_id = uuid.uuid5(run_id, f"replay/{token}")
    if db.execute(select(runs.c.id).where(runs.c.id == new_id)).first() is not None:
        return None
    return replay(db, run_id, now=now, new_id=new_id)


def resume(db: Connection, schedule: ScheduleRef, *, now: datetime) -> str | None:
    """Lift a pause ``pauseAfterFailures`` put on; the reason it was paused, or None if not.

    The schedule plans again unless its spec asks for ``suspend: true``; its failure count
    starts again from zero.
    """
    row = db.execute(select(schedules.c.paused_reason).where(schedules.c.id == schedule.id)).first()
    if row is None or row.paused_reason is None:
        return None
    db.execute(
        update(schedules)
        .where(schedules.c.id == schedule.id)
        .values(
            suspended=schedule.spec.suspend,
            paused_reason=None,
            consecutive_failures=0,
            updated_at=now,
        )
    )
    notify(db, str(schedule.id))
    return str(row.paused_reason)


def _plan_now(
    db: Connection,
    schedule: ScheduleRef,
    *,
    task: str,
    origin: RunOrigin,
    now: datetime,
    replay_of: uuid.UUID | None = None,
    run_id: uuid.UUID | None = None,
) -> uuid.UUID:
    run_id = run_id or uuid.uuid4()
    planned = now
    # The run key is (schedule, planned instant): a request in the same microsecond as a
    # planned occurrence or another request takes the next free microsecond.
    row = {
        "id": run_id,
        "schedule_id": schedule.id,
        "due_at": now,
        "task": task,
        "max_attempts": schedule.spec.retry.max_attempts,
        "origin": origin.value,
        "replay_of": replay_of,
        "created_at": now,
        "updated_at": now,
    }
    while not insert_runs(db, [{**row, "planned_at": planned}]):
        planned += _TICK
    notify(db, str(schedule.id))
    return run_id
