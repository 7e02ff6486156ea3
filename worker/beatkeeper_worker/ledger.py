"""The two writes every run makes from its pool process: the claim, and the outcome of a success.

- **The claim** (``enqueued → running``) is waited for: the body must not start unless it
  succeeded (invariant 3). It commits asynchronously, so a crash of the PostgreSQL server
  within a fraction of a second can undo it; writing the success again
  (``beatkeeper.store.recording.record_success_again``) then claims and finishes the run in
  one transaction. A claim that moves nothing asks
  ``ownership`` whether the message may take the run over.
- **The success** is only *sent* before the task returns; its answer is read when the
  thread's held connection is next used (``read_answers``, before the next claim, and
  ``read_answers_at_exit``). The statement has left the process before Celery acknowledges
  the message. If the connection broke before the answer came, the success is written again
  on a fresh connection, which is harmless if it had arrived.

What the statements are: ``beatkeeper.store.recording``. This module must not talk to Celery
(``tracking`` does) nor hold SQL.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from beatkeeper.decisions.ownership import Owner
from beatkeeper.observability import metrics
from beatkeeper.states import RunState
from beatkeeper.store import DatabaseUnavailable, recording
from beatkeeper.store.held_connection import HeldConnection
from beatkeeper_worker import ownership
from beatkeeper_worker.messages import Delivery
from beatkeeper_worker.pool_process import FINISH_RETRY_DELAYS, PoolProcess, line

__all__ = ["claim", "read_answers", "read_answers_at_exit", "succeeded"]

logger = logging.getLogger("beatkeeper.worker")

#: How long an exiting process waits for the answer to the outcome it sent last.
EXIT_ANSWER_SECONDS = 5.0


def claim(process: PoolProcess, delivery: Delivery, me: Owner) -> bool:
    """Move the run to ``running`` for ``me``; ``False``: it must not run here (see logs).

    The claim moves the run only when the message's task and schedule are the row's;
    otherwise ``ownership.take_over`` finds out why and logs it, touching nothing.
    """
    read_answers(process)
    sessions = process.sessions
    claimed = recording.claim(
        sessions.hold(),
        sessions.statements,
        run_id=delivery.run_id,
        owner=me,
        now=datetime.now(UTC),
        task=delivery.task,
        schedule_id=delivery.schedule_id,
        schedule=delivery.schedule,
    )
    if claimed:
        return True
    with sessions.transaction() as db:
        return ownership.take_over(db, delivery, me, now=datetime.now(UTC))


@dataclass(frozen=True)
class _Success:
    """A success sent and not yet confirmed: what writing it again needs."""

    delivery: Delivery
    owner: Owner
    summary: str


def succeeded(process: PoolProcess, delivery: Delivery, me: Owner, summary: str) -> None:
    """Send the run's success on this thread's held connection; ``read_answers`` reads it.

    Should the send itself fail, the success is written in a transaction of its own, with
    retries, before the task returns.
    """
    success = _Success(delivery, me, summary)
    sessions = process.sessions
    try:
        recording.send_success(
            sessions.hold(),
            sessions.statements,
            run_id=delivery.run_id,
            schedule_id=delivery.schedule_id,
            result=summary,
            now=datetime.now(UTC),
            tag=success,
        )
    except DatabaseUnavailable as error:
        process.discard()
        logger.warning("database unavailable, recording the success again: %s", line(error))
        _record_again(process, success, FINISH_RETRY_DELAYS)
    metrics.RUNS_FINISHED.labels(RunState.SUCCEEDED.value).inc()


def read_answers(process: PoolProcess) -> None:
    """Read the answer this thread's held connection is owed; a success it lost is written
    again."""
    held = process.sessions.held()
    if held is not None and held.pending:
        _read_answers(process, held)


def read_answers_at_exit(process: PoolProcess) -> None:
    """Read every thread's pending answers as the process exits: briefly, and without the
    retries of a running process (the database may be going away with it)."""
    for held in process.sessions.every_held():
        _read_answers(process, held, delays=(), timeout=EXIT_ANSWER_SECONDS)


def _read_answers(
    process: PoolProcess,
    held: HeldConnection,
    *,
    delays: tuple[float, ...] = FINISH_RETRY_DELAYS,
    timeout: float | None = None,
) -> None:
    try:
        answers = held.collect(timeout=timeout)
    except DatabaseUnavailable as error:
        lost = held.unanswered()
        process.discard(held)
        logger.warning(
            "database connection lost with %d outcome(s) unconfirmed: %s", len(lost), line(error)
        )
        for success in lost:
            _record_again(process, success, delays)
        return
    for success, rows in answers:
        if not rows:
            logger.warning(
                "run %s of %s succeeded but was no longer running", *success.delivery.at()
            )


def _record_again(process: PoolProcess, success: _Success, delays: tuple[float, ...]) -> None:
    def attempt() -> None:
        with process.sessions.transaction() as db:
            recording.record_success_again(
                db,
                run_id=success.delivery.run_id,
                schedule_id=success.delivery.schedule_id,
                owner=success.owner,
                result=success.summary,
                now=datetime.now(UTC),
            )

    try:
        process.retrying(delays, attempt)
    except DatabaseUnavailable as error:
        logger.error(  # noqa: TRY400 (one line, no traceback: an outage is not a bug)
            "run %s of %s succeeded, not recorded: %s", *success.delivery.at(), line(error)
        )
