"""What follows a failed attempt: the next attempt later, a dead run, or a run that stays failed.

``after_failure`` runs in the transaction that moved the run to ``failed``, so nobody ever
sees a run ``failed`` that is about to be retried. It reads the run and its schedule's retry
settings, asks ``beatkeeper.decisions.attempts`` what the failure becomes, and records that:
``retrying`` with a ``due_at`` (the next attempt waits in PostgreSQL, invariant 4), ``dead``,
or ``failed`` as it is. A final failure adds one to the schedule's failures in a row and may
pause it (``pauseAfterFailures``); a success resets the count (the success statement).

This module logs, counts and records; it must not talk to Celery nor hold SQL.
"""

from __future__ import annotations

import logging
import random
import uuid
from collections.abc import Callable
from datetime import datetime

from beatkeeper.decisions.attempts import AfterFailure, FailedAttempt, pause_reason
from beatkeeper.decisions.attempts import after_failure as decide
from beatkeeper.observability.metrics import RUNS_FINISHED, count_schedule_run
from beatkeeper.states import RunState
from beatkeeper.store import recording

__all__ = ["after_failure"]

logger = logging.getLogger("beatkeeper.worker")


def after_failure(
    db: recording.Connection,
    run_id: uuid.UUID,
    *,
    error: str,
    now: datetime,
    uniform: Callable[[], float] = random.random,
) -> AfterFailure:
    """Move run ``run_id``, just moved to ``failed``, on to where the failure leaves it.

    Call it inside the transaction of the ``failed`` transition; it never commits.
    """
    run = recording.read_failed_run(db, run_id)
    failed = FailedAttempt(run.attempt, run.max_attempts, run.backoff, run.pause_after)
    decided = decide(failed, now=now, uniform=uniform)
    where = f"run {run_id} of {run.namespace}/{run.name}"
    RUNS_FINISHED.labels(decided.state.value).inc()
    if decided.due_at is not None:
        recording.retry_later(db, run_id, due_at=decided.due_at, now=now)
        logger.info(
            "%s: attempt %d of %d failed (%s); next attempt at %s",
            where, run.attempt, run.max_attempts, error, decided.due_at.isoformat(),
        )  # fmt: skip
        return decided
    if decided.state is RunState.DEAD:
        recording.dead_letter(db, run_id, now=now)
        logger.warning(
            "%s is dead: all %d attempts failed, the last with %s; "
            "replay it with `beatkeeper runs replay %s`",
            where, run.max_attempts, error, run_id,
        )  # fmt: skip
        count_schedule_run(RunState.DEAD.value, run.namespace, run.name)
    failures = recording.count_final_failure(db, run.schedule_id)
    reason = pause_reason(failures, run.pause_after)
    if reason is not None and recording.pause_schedule(db, run.schedule_id, reason=reason, now=now):
        logger.warning(
            "schedule %s/%s suspended: %d consecutive runs failed (pauseAfterFailures); "
            "change its spec to resume it",
            run.namespace, run.name, run.pause_after,
        )  # fmt: skip
    return decided
