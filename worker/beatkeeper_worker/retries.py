"""What happens to a run after an attempt failed: retry later, dead-letter, or stay failed.

``settle_failure`` runs in the transaction that moved the run to ``failed``, so nobody ever
sees a run ``failed`` that is about to be retried. With attempts left the run moves on to
``retrying`` with ``attempt + 1`` and ``due_at`` = now + a full-jitter backoff
(``beatkeeper.retry``): the next attempt waits in PostgreSQL and Beat publishes it when it
is due, never as a Celery countdown sitting in Redis (invariant 4). After the last attempt
the run is ``dead`` (with ``retry.maxAttempts > 1``) or stays ``failed`` (without retries).

A final failure (``failed`` or ``dead``) adds one to the schedule's
``consecutive_failures``; reaching ``pauseAfterFailures`` suspends the schedule with a
``paused_reason``. A success resets the count (``RESET_FAILURES``); editing the spec lifts
the pause (``beatkeeper.store.schedules.apply_schedule``).

This module decides and writes; it must not talk to Celery.
"""

from __future__ import annotations

import logging
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import Connection, Update, bindparam, select, update

from beatkeeper.observability.metrics import RUNS_FINISHED, count_schedule_run
from beatkeeper.retry import next_delay
from beatkeeper.spec.model import Retry
from beatkeeper.states import RunState
from beatkeeper.store.models import runs, schedules
from beatkeeper.store.notifications import notify
from beatkeeper.store.runs import transition

__all__ = ["RESET_FAILURES", "Settled", "settle_failure"]

logger = logging.getLogger("beatkeeper.worker")

#: After a success (parameter ``schedule_id``): the count restarts from zero. It updates
#: only a schedule that has a count, so it usually writes nothing.
RESET_FAILURES: Update = (
    update(schedules)
    .where(schedules.c.id == bindparam("schedule_id"), schedules.c.consecutive_failures != 0)
    .values(consecutive_failures=0)
)


@dataclass(frozen=True)
class Settled:
    """Where a failed attempt left its run."""

    state: Literal[RunState.RETRYING, RunState.DEAD, RunState.FAILED]
    due_at: datetime | None = None  # the next attempt, when retrying
    paused: bool = False  # this failure suspended the schedule (pauseAfterFailures)


def settle_failure(
    db: Connection,
    run_id: uuid.UUID,
    *,
    error: str,
    now: datetime,
    uniform: Callable[[], float] = random.random,
) -> Settled:
    """Move run ``run_id``, just moved to ``failed``, on to ``retrying`` or ``dead``.

    Call it inside the transaction of the ``failed`` transition; it never commits.
    """
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
    where = f"run {run_id} of {row.namespace}/{row.name}"
    if row.attempt < row.max_attempts:
        backoff = Retry.model_validate(row.spec.get("retry", {})).backoff
        due = now + next_delay(backoff, row.attempt, uniform=uniform)
        transition(db, run_id, RunState.RETRYING, now=now, attempt=runs.c.attempt + 1, due_at=due)
        notify(db, str(run_id))  # Beat may be asleep until later than this retry is due
        logger.info(
            "%s: attempt %d of %d failed (%s); next attempt at %s",
            where, row.attempt, row.max_attempts, error, due.isoformat(),
        )  # fmt: skip
        RUNS_FINISHED.labels(RunState.RETRYING.value).inc()
        return Settled(RunState.RETRYING, due_at=due)
    final: Literal[RunState.DEAD, RunState.FAILED] = (
        RunState.DEAD if row.max_attempts > 1 else RunState.FAILED
    )
    if final is RunState.DEAD:
        transition(db, run_id, RunState.DEAD, now=now)
        logger.warning(
            "%s is dead: all %d attempts failed, the last with %s; "
            "replay it with `beatkeeper runs replay %s`",
            where, row.max_attempts, error, run_id,
        )  # fmt: skip
    RUNS_FINISHED.labels(final.value).inc()
    if final is RunState.DEAD:
        count_schedule_run(final.value, row.namespace, row.name)
    paused = _count_failure(db, row.schedule_id, row.spec.get("pauseAfterFailures"), now=now)
    if paused:
        logger.warning(
            "schedule %s/%s suspended: %d consecutive runs failed (pauseAfterFailures); "
            "change its spec to resume it",
            row.namespace, row.name, row.spec["pauseAfterFailures"],
        )  # fmt: skip
    return Settled(final, paused=paused)


def _count_failure(
    db: Connection, schedule_id: uuid.UUID, pause_after: int | None, *, now: datetime
) -> bool:
    """Add a final failure to the schedule's count; suspend it at ``pause_after``."""
    count = db.execute(
        update(schedules)
        .where(schedules.c.id == schedule_id)
        .values(consecutive_failures=schedules.c.consecutive_failures + 1)
        .returning(schedules.c.consecutive_failures)
    ).scalar_one()
    if pause_after is None or count < pause_after:
        return False
    reason = f"paused after {count} consecutive failed runs (pauseAfterFailures: {pause_after})"
    suspended = db.execute(
        update(schedules)
        .where(schedules.c.id == schedule_id, ~schedules.c.suspended)
        .values(suspended=True, paused_reason=reason, updated_at=now)
        .returning(schedules.c.id)
    ).first()
    return suspended is not None
