"""Cancel requests: a person asks to cancel a run; a running one waits for Celery to stop it.

``request`` is what ``beatkeeper runs cancel`` and the operator's ``beatkeeper.io/cancel``
annotation call. A run that has not started (``planned``, ``enqueued``, ``retrying``) is
cancelled at once: a worker that gets its message believes the row. A ``running`` run needs
its Celery task revoked, which only a component with a broker connection can do, so it gets
a row in ``cancel_requests`` naming who asked, and a ``NOTIFY`` wakes Beat
(``beatkeeper_worker.cancelling``). The run stays ``running`` until ``cancel_requested``
moves it to ``cancelled`` (the worker, once it stopped the task; Beat, once the deadline
passed); a run that finishes first keeps its outcome and the request is settled unused.

Every move is one conditional transition under the request's row lock, so a run is
recorded cancelled once, whoever gets there first. Functions never commit; they raise
``lookups.NotFoundError``/``RefusedError`` with a message fit for a person. This module
must not talk to Celery, nor decide when Beat acts (its caller passes the times).
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import BindParameter, Connection, any_, bindparam, func, select, update
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.types import Uuid

from beatkeeper.states import RunState
from beatkeeper.store.lookups import NotFoundError, RefusedError
from beatkeeper.store.models import cancel_requests, runs
from beatkeeper.store.notifications import notify
from beatkeeper.store.runs import transition

__all__ = [
    "NEXT_CHECK",
    "WAITING",
    "Asked",
    "Cancel",
    "OpenRequest",
    "cancel_requested",
    "claim_open",
    "request",
    "revoked",
    "settle",
]

#: States cancelled at once: the run has not started, or waits for a retry.
WAITING = frozenset({RunState.PLANNED, RunState.ENQUEUED, RunState.RETRYING})


class Asked(StrEnum):
    """What a cancel request did."""

    CANCELLED = "cancelled"  # it had not started: cancelled now
    REQUESTED = "requested"  # it is running: Beat will have it stopped
    ALREADY_REQUESTED = "already requested"  # nothing new
    ALREADY_CANCELLED = "already cancelled"  # nothing to do


@dataclass(frozen=True)
class Cancel:
    """The answer to a cancel request: what it did, and the run as it found it."""

    run_id: uuid.UUID
    asked: Asked
    state: str  # the run's state when asked
    worker: str | None  # the process running it, when running
    requested_at: datetime | None = None  # of the request found, when one was there
    reason: str | None = None  # of the request found


def request(db: Connection, run_id: uuid.UUID, *, reason: str, now: datetime) -> Cancel:
    """Cancel ``run_id`` now, or ask Beat to have it stopped when it is running.

    ``reason`` names who asked ("cancelled on request (…)"); it becomes the run's error.
    Asking again is a no-op; a finished run is refused (``RefusedError``).
    """
    run = db.execute(
        select(runs.c.state, runs.c.worker).where(runs.c.id == run_id).with_for_update()
    ).first()
    if run is None:
        raise NotFoundError(f"no run {run_id}")
    state, worker = RunState(run.state), run.worker
    found = db.execute(
        select(cancel_requests.c.requested_at, cancel_requests.c.reason).where(
            cancel_requests.c.run_id == run_id
        )
    ).first()
    if found is not None:
        return Cancel(run_id, Asked.ALREADY_REQUESTED, state, worker, *found)
    if state is RunState.CANCELLED:
        return Cancel(run_id, Asked.ALREADY_CANCELLED, state, worker)
    if state in WAITING:
        transition(db, run_id, RunState.CANCELLED, now=now, error=reason)
        return Cancel(run_id, Asked.CANCELLED, state, worker)
    if state is not RunState.RUNNING:
        raise RefusedError(f"run {run_id} is {state}: it has finished and cannot be cancelled")
    db.execute(
        insert(cancel_requests).values(run_id=run_id, requested_at=now, reason=reason, check_at=now)
    )
    notify(db, f"cancel {run_id}")  # Beat acts on it at once, not at its next due instant
    return Cancel(run_id, Asked.REQUESTED, state, worker)


@dataclass(frozen=True)
class OpenRequest:
    """A request Beat must act on now, with where its run has got to."""

    run_id: uuid.UUID
    reason: str
    revoked_at: datetime | None
    state: RunState
    worker: str | None


def claim_open(db: Connection, *, now: datetime, limit: int) -> list[OpenRequest]:
    """Lock the open requests due for a look (``FOR UPDATE SKIP LOCKED``: each replica
    takes its own), oldest first."""
    query = (
        select(
            cancel_requests.c.run_id,
            cancel_requests.c.reason,
            cancel_requests.c.revoked_at,
            runs.c.state,
            runs.c.worker,
        )
        .join(runs, runs.c.id == cancel_requests.c.run_id)
        .where(cancel_requests.c.settled_at.is_(None), cancel_requests.c.check_at <= now)
        .order_by(cancel_requests.c.check_at)
        .limit(limit)
        .with_for_update(of=cancel_requests, skip_locked=True)
    )
    return [
        OpenRequest(row.run_id, row.reason, row.revoked_at, RunState(row.state), row.worker)
        for row in db.execute(query)
    ]


def revoked(
    db: Connection,
    run_ids: Collection[uuid.UUID],
    *,
    now: datetime,
    resend: timedelta,
    deadline: timedelta,
) -> None:
    """Record that a revoke was sent for ``run_ids`` now: the first one starts the
    ``deadline``; the next look is at ``resend`` from now, or at the deadline if sooner."""
    first = func.coalesce(cancel_requests.c.revoked_at, now)
    db.execute(
        update(cancel_requests)
        .where(cancel_requests.c.run_id == any_(_ids(run_ids)))
        .values(revoked_at=first, check_at=func.least(now + resend, first + deadline))
    )


def cancel_requested(db: Connection, run_id: uuid.UUID, *, now: datetime, how: str) -> bool:
    """Record a run with an open request ``cancelled``, its error the request's reason and
    ``how`` it ended; False (nothing changed) without an open request or once it finished.

    Whoever calls it first wins; the request's row lock orders the callers.
    """
    reason = db.execute(
        select(cancel_requests.c.reason)
        .where(cancel_requests.c.run_id == run_id, cancel_requests.c.settled_at.is_(None))
        .with_for_update()
    ).scalar_one_or_none()
    if reason is None:
        return False
    moved = transition(db, run_id, RunState.CANCELLED, now=now, error=f"{reason}: {how}")
    if moved:
        settle(db, [run_id], now=now)
    return moved


def settle(db: Connection, run_ids: Collection[uuid.UUID], *, now: datetime) -> None:
    """Close the requests of runs that left ``running`` (cancelled, or finished first)."""
    db.execute(
        update(cancel_requests)
        .where(cancel_requests.c.run_id == any_(_ids(run_ids)))
        .where(cancel_requests.c.settled_at.is_(None))
        .values(settled_at=now)
    )


NEXT_CHECK = "(SELECT min(check_at) FROM cancel_requests WHERE settled_at IS NULL)"
"""When Beat must next act on an open request (NULL: none is open), as a scalar subquery:
Beat asks it after every tick in the same round trip as its other wake times
(``beatkeeper.store.planning.wake_times``)."""


def _ids(run_ids: Collection[uuid.UUID]) -> BindParameter[Any]:
    # "= ANY(array)" keeps one SQL text whatever the count.
    return bindparam("run_ids", list(run_ids), type_=ARRAY(Uuid()))
