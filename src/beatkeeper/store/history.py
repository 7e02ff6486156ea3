"""Runs as people see and ask for them: list them, trigger, backfill, replay, cancel, resume.

The queries behind `beatkeeper runs`, `trigger`, `backfill`, `runs replay`, `smoke` and the
operator's request annotations (``kubectl beatkeeper``).
Runs made here are born ``planned`` and due now (or at their own time, for a backfill),
with an ``origin`` saying why they exist; Beat publishes them like any other run, and a
``NOTIFY`` wakes it so it does not wait for its next scheduled tick. A replay is a new run
(``replay_of`` the old one) of the schedule's current spec: finished runs never change state
again.

Functions take a Connection inside the caller's transaction and never commit; they raise
``NotFoundError`` or ``RefusedError`` with a message fit for a person. This module must not
print, publish or decide when runs happen beyond what a person asked for.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, Text, cast, func, select, update
from sqlalchemy.dialects.postgresql import insert

from beatkeeper.recurrence import Recurrence
from beatkeeper.spec import ScheduleSpec, recurrence_of
from beatkeeper.states import RunState
from beatkeeper.store.models import RunOrigin, runs, schedules
from beatkeeper.store.notifications import notify
from beatkeeper.store.runs import transition

__all__ = [
    "CANCELLABLE",
    "MAX_BACKFILL",
    "REPLAYABLE",
    "NotFoundError",
    "RefusedError",
    "Replay",
    "RunView",
    "ScheduleRef",
    "already_planned",
    "backfill",
    "cancel",
    "find_run_id",
    "find_schedule",
    "latest_run",
    "list_runs",
    "occurrences_between",
    "replay",
    "replay_once",
    "resume",
    "token_run_id",
    "trigger",
    "trigger_once",
]

REPLAYABLE = frozenset({RunState.DEAD, RunState.FAILED})
#: The most occurrences one backfill plans, from the CLI or the ``beatkeeper.io/backfill``
#: annotation alike: a window wider than this is refused whole, not cut short.
MAX_BACKFILL = 1000
_TICK = timedelta(microseconds=1)


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
    worker: str | None
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
    key = func.concat(schedules.c.namespace, "/", schedules.c.name).label("schedule")
    query = select(runs, key).join(schedules, schedules.c.id == runs.c.schedule_id)
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
    return _ref(row)


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
    schedule = _ref(row)
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


#: States a person may cancel from: the run has not started, or waits for a retry. A
#: running run would need its Celery task revoked, which the store alone cannot do.
CANCELLABLE = frozenset({RunState.PLANNED, RunState.ENQUEUED, RunState.RETRYING})


def cancel(db: Connection, run_id: uuid.UUID, *, now: datetime, reason: str) -> bool:
    """Cancel a planned, enqueued or retrying run; False if it was cancelled already.

    A worker that receives a cancelled run's message believes the row and does not run it.
    ``RefusedError`` for a running or finished run.
    """
    state = db.execute(select(runs.c.state).where(runs.c.id == run_id)).scalar_one_or_none()
    if state is None:
        raise NotFoundError(f"no run {run_id}")
    if state == RunState.CANCELLED:
        return False
    if state == RunState.RUNNING:
        raise RefusedError(
            f"run {run_id} is running: cancelling a running run needs its Celery task "
            "revoked, which is not supported yet; only planned, enqueued or retrying runs "
            "can be cancelled"
        )
    if RunState(state) not in CANCELLABLE:
        raise RefusedError(f"run {run_id} is {state}: it has finished and cannot be cancelled")
    return transition(db, run_id, RunState.CANCELLED, now=now, error=reason)


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
    statement = insert(runs).on_conflict_do_nothing(
        index_elements=[runs.c.schedule_id, runs.c.planned_at]
    )
    inserted = len(db.execute(statement.returning(runs.c.id), rows).all())
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


def latest_run(db: Connection, schedule_id: uuid.UUID) -> RunView | None:
    """The schedule's run with the latest planned time, if it has any."""
    row = db.execute(
        select(runs, func.concat(schedules.c.namespace, "/", schedules.c.name).label("schedule"))
        .join(schedules, schedules.c.id == runs.c.schedule_id)
        .where(runs.c.schedule_id == schedule_id)
        .order_by(runs.c.planned_at.desc())
        .limit(1)
    ).first()
    return None if row is None else _view(row)


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
    while True:
        inserted = db.execute(
            insert(runs)
            .values(
                id=run_id,
                schedule_id=schedule.id,
                planned_at=planned,
                due_at=now,
                task=task,
                max_attempts=schedule.spec.retry.max_attempts,
                origin=origin.value,
                replay_of=replay_of,
                created_at=now,
                updated_at=now,
            )
            .on_conflict_do_nothing(index_elements=[runs.c.schedule_id, runs.c.planned_at])
            .returning(runs.c.id)
        ).first()
        if inserted is not None:
            break
        planned += _TICK
    notify(db, str(schedule.id))
    return run_id


def _ref(row: Row[Any]) -> ScheduleRef:
    return ScheduleRef(
        id=row.id,
        namespace=row.namespace,
        name=row.name,
        task=row.task,
        spec=ScheduleSpec.model_validate(row.spec),
        created_at=row.created_at,
    )


def _view(row: Row[Any]) -> RunView:
    fields = row._mapping
    return RunView(**{name: fields[name] for name in RunView.__dataclass_fields__})
