"""What a worker records about a run, as named operations: the claim, the outcome, failures.

The hot path is two prepared statements per run on a thread's held connection (``claim``
waits for its answer; ``send_success`` does not, see ``held_connection``). Everything rarer
(a take-over, a failure and what follows it, a release, a success written again) is one
function per write here, run inside the caller's transaction (``sessions``); none commits.
The worker decides which to call (``beatkeeper.decisions``); this module must not decide,
log or talk to Celery.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, text, update

from beatkeeper.decisions.ownership import Owner, RecordedRun
from beatkeeper.spec.model import Backoff, Retry
from beatkeeper.states import RunState
from beatkeeper.store.held_connection import HeldConnection
from beatkeeper.store.models import runs, schedules
from beatkeeper.store.notifications import notify
from beatkeeper.store.prepared import DUE_BY, RESET_FAILURES, WAITING, Statements
from beatkeeper.store.runs import transition

__all__ = [
    "Connection",
    "FailedRun",
    "cancel",
    "claim",
    "count_final_failure",
    "dead_letter",
    "fail",
    "owner_columns",
    "owner_display",
    "pause_schedule",
    "read_failed_run",
    "read_run",
    "record_success_again",
    "release",
    "retry_later",
    "send_success",
    "session_alive",
    "take_over",
]


def owner_display(worker: str | None, pid: int | None, session: str | None) -> str | None:
    """The owner columns as people read them: ``worker (pid N, session T)``."""
    if pid is None or session is None:
        return worker
    return Owner(worker or "unknown", pid, session).described()


def owner_columns(owner: Owner | None) -> dict[str, Any]:
    """The ``runs`` columns that name ``owner`` (all NULL: nobody)."""
    if owner is None:
        return {"worker": None, "worker_pid": None, "worker_session": None}
    return {"worker": owner.worker, "worker_pid": owner.pid, "worker_session": owner.session}


# -- the hot path: prepared statements on a held connection -------------------------------


def claim(
    held: HeldConnection,
    statements: Statements,
    *,
    run_id: uuid.UUID,
    owner: Owner,
    now: datetime,
    task: str,
    schedule_id: uuid.UUID,
    schedule: str,
) -> bool:
    """Move the run to ``running`` for ``owner`` if the message (task, schedule) is its own
    and it may start now; waits for the answer."""
    namespace, _, name = schedule.partition("/")
    values = {
        "id": run_id,
        "now": now,
        **owner_columns(owner),
        "task": task,
        "schedule_id": schedule_id,
        "namespace": namespace,
        "name": name,
    }
    return held.execute(statements.claim, values) > 0


def send_success(
    held: HeldConnection,
    statements: Statements,
    *,
    run_id: uuid.UUID,
    schedule_id: uuid.UUID,
    result: str,
    now: datetime,
    tag: Any,
) -> None:
    """Send ``running → succeeded`` (and the reset of the failure count) without waiting;
    ``held.collect`` hands back ``(tag, rows)``, 0 rows: the run was no longer running."""
    values = {"id": run_id, "now": now, "result": result, "schedule_id": schedule_id}
    held.send(statements.success, values, tag=tag)


def record_success_again(
    db: Connection,
    *,
    run_id: uuid.UUID,
    schedule_id: uuid.UUID,
    owner: Owner,
    result: str,
    now: datetime,
) -> None:
    """A success whose answer was lost: record it unless it arrived (or the claim did not)."""
    state = db.execute(
        select(runs.c.state).where(runs.c.id == run_id).with_for_update()
    ).scalar_one_or_none()
    if state == RunState.ENQUEUED:  # the server restarted and forgot the asynchronous claim
        transition(db, run_id, RunState.RUNNING, now=now, **owner_columns(owner))
    elif state != RunState.RUNNING:
        return  # recorded already (the answer was lost, not the statement)
    if transition(db, run_id, RunState.SUCCEEDED, now=now, result=result):
        db.execute(RESET_FAILURES, {"schedule_id": schedule_id})


# -- who runs it -----------------------------------------------------------------------------


def read_run(db: Connection, run_id: uuid.UUID, *, for_update: bool = False) -> RecordedRun | None:
    """The run row ``run_id`` and its schedule's ``namespace/name``; ``None``: no such run."""
    query = (
        select(
            runs.c.state,
            runs.c.task,
            runs.c.schedule_id,
            runs.c.worker,
            runs.c.worker_pid,
            runs.c.worker_session,
            runs.c.worker_losses,
            schedules.c.namespace,
            schedules.c.name,
            runs.c.due_at,
            (runs.c.state.in_(WAITING) & (runs.c.due_at > DUE_BY)).label("early"),
        )
        .join(schedules, schedules.c.id == runs.c.schedule_id)
        .where(runs.c.id == run_id)
    )
    if for_update:
        query = query.with_for_update(of=runs)
    row: Any = db.execute(query).first()
    if row is None:
        return None
    owner = None
    if row.worker_session is not None:
        owner = Owner(row.worker or "unknown", row.worker_pid or 0, row.worker_session)
    return RecordedRun(
        state=row.state,
        task=row.task,
        schedule_id=row.schedule_id,
        schedule=f"{row.namespace}/{row.name}",
        owner=owner,
        worker_losses=row.worker_losses,
        due_at=row.due_at,
        early=bool(row.early),
    )


_SESSION_EXISTS = text(
    "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE application_name = :name)"
)


def session_alive(db: Connection, application_name: str) -> bool:
    """Whether a database session with this ``application_name`` exists now."""
    return bool(db.execute(_SESSION_EXISTS, {"name": application_name}).scalar())


def take_over(
    db: Connection,
    run_id: uuid.UUID,
    *,
    previous: Owner | None,
    owner: Owner,
    losses: int,
    now: datetime,
) -> bool:
    """Make ``owner`` the owner of the ``running`` run that ``previous`` held; ``False``:
    someone else changed it first."""
    previous_session = None if previous is None else previous.session
    taken = db.execute(
        update(runs)
        .where(runs.c.id == run_id, runs.c.state == RunState.RUNNING.value)
        .where(runs.c.worker_session.is_not_distinct_from(previous_session))
        .values(
            **owner_columns(owner),
            started_at=now,
            finished_at=None,
            updated_at=now,
            worker_losses=losses,
        )
        .returning(runs.c.id)
    ).first()
    return taken is not None


def release(db: Connection, run_id: uuid.UUID, *, owner: Owner, now: datetime) -> None:
    """``owner`` hands its ``running`` run back (a retry, a requeue): whoever gets it runs it."""
    db.execute(
        update(runs)
        .where(runs.c.id == run_id, runs.c.state == RunState.RUNNING.value)
        .where(runs.c.worker_session == owner.session)
        .values(**owner_columns(None), updated_at=now)
    )


# -- failures and what follows them ---------------------------------------------------------


def fail(db: Connection, run_id: uuid.UUID, *, error: str, now: datetime, **fields: Any) -> bool:
    """Move the run to ``failed``; ``False``: it was not in a state that can fail."""
    return transition(db, run_id, RunState.FAILED, now=now, error=error, **fields)


def cancel(db: Connection, run_id: uuid.UUID, *, error: str, now: datetime) -> bool:
    return transition(db, run_id, RunState.CANCELLED, now=now, error=error)


@dataclass(frozen=True)
class FailedRun:
    """A run just moved to ``failed``, with what its schedule says about failures."""

    attempt: int
    max_attempts: int
    schedule_id: uuid.UUID
    namespace: str
    name: str
    backoff: Backoff
    pause_after: int | None


def read_failed_run(db: Connection, run_id: uuid.UUID) -> FailedRun:
    row = db.execute(
        select(
            runs.c.attempt,
            runs.c.max_attempts,
            runs.c.schedule_id,
            schedules.c.namespace,
            schedules.c.name,
            schedules.c.spec,
        )
        .join(schedules, schedules.c.id == runs.c.schedule_id)
        .where(runs.c.id == run_id)
    ).one()
    return FailedRun(
        attempt=row.attempt,
        max_attempts=row.max_attempts,
        schedule_id=row.schedule_id,
        namespace=row.namespace,
        name=row.name,
        backoff=Retry.model_validate(row.spec.get("retry", {})).backoff,
        pause_after=row.spec.get("pauseAfterFailures"),
    )


def retry_later(db: Connection, run_id: uuid.UUID, *, due_at: datetime, now: datetime) -> None:
    """``failed → retrying``: the next attempt waits in PostgreSQL until ``due_at``."""
    transition(db, run_id, RunState.RETRYING, now=now, attempt=runs.c.attempt + 1, due_at=due_at)
    notify(db, str(run_id))  # Beat may be asleep until later than this retry is due


def dead_letter(db: Connection, run_id: uuid.UUID, *, now: datetime) -> None:
    transition(db, run_id, RunState.DEAD, now=now)


def count_final_failure(db: Connection, schedule_id: uuid.UUID) -> int:
    """Add one to the schedule's failures in a row; the new count."""
    count: int = db.execute(
        update(schedules)
        .where(schedules.c.id == schedule_id)
        .values(consecutive_failures=schedules.c.consecutive_failures + 1)
        .returning(schedules.c.consecutive_failures)
    ).scalar_one()
    return count


def pause_schedule(db: Connection, schedule_id: uuid.UUID, *, reason: str, now: datetime) -> bool:
    """Suspend the schedule with ``reason``; ``False``: it was suspended already."""
    suspended = db.execute(
        update(schedules)
        .where(schedules.c.id == schedule_id, ~schedules.c.suspended)
        .values(suspended=True, paused_reason=reason, updated_at=now)
        .returning(schedules.c.id)
    ).first()
    return suspended is not None
