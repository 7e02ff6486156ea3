"""Whether a message whose claim moved nothing may take its ``running`` run over, and doing it.

The owner of a running run is a pool process (``Owner``: worker, pid, session token); its
database sessions carry the token (``beatkeeper.store.sessions.session_name``), so it is
alive while such a session exists. A killed process's backend exits once PostgreSQL reads
the closed socket, which can be a moment after the broker handed the message back: a
redelivered message gives a dying owner ``OWNER_EXIT_GRACE_SECONDS``. What the answer is
(refuse, take over, give up after ``MAX_WORKER_LOSSES``): ``beatkeeper.decisions.ownership``.
A message for a run someone asked to cancel is recorded ``cancelled`` instead of taken over
(``beatkeeper.store.cancellations``).

This module reads, asks the decision and records one take-over; it must not talk to Celery.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime

from beatkeeper.decisions import ownership as rules
from beatkeeper.decisions.ownership import Owner, Refusal, Refused
from beatkeeper.store import cancellations, recording
from beatkeeper.store.sessions import session_name
from beatkeeper_worker import retries
from beatkeeper_worker.messages import Delivery

__all__ = ["OWNER_EXIT_GRACE_SECONDS", "still_owned", "take_over"]

logger = logging.getLogger("beatkeeper.worker")

OWNER_EXIT_GRACE_SECONDS = 2.0
_LOG_LEVEL = {
    Refusal.MISSING: logging.WARNING,
    Refusal.FOREIGN: logging.ERROR,
    Refusal.NOT_RUNNING: logging.INFO,
    Refusal.OWNED: logging.INFO,
}


def take_over(db: recording.Connection, delivery: Delivery, me: Owner, *, now: datetime) -> bool:
    """Run ``delivery``'s run after all if it is ``running`` for a process that is gone.

    A message that is not one of its run's is refused here, the row untouched.
    """
    row = recording.read_run(db, delivery.run_id)
    refused = rules.refusal(delivery.message(), row, me=me)
    if refused is None and row is not None:
        alive = still_owned(db, row.owner, redelivered=delivery.redelivered)
        decided = rules.take_over(row, owner_alive=alive)
        if isinstance(decided, rules.GiveUp | rules.TakeOver) and _cancelled(
            db, delivery, row.owner, now=now
        ):
            return False
        if isinstance(decided, rules.GiveUp):
            _give_up(db, delivery, decided, now=now)
            return False
        if isinstance(decided, rules.TakeOver):
            return _take(db, delivery, row.owner, me, decided.losses, now=now)
        refused = decided
    _log_refused(delivery, refused)
    return False


def _cancelled(
    db: recording.Connection, delivery: Delivery, owner: Owner | None, *, now: datetime
) -> bool:
    """A run whose owner is gone and whose cancel was asked for is cancelled, not run again."""
    gone = f"its worker ({'none' if owner is None else owner.described()}) is gone; not run again"
    if not cancellations.cancel_requested(db, delivery.run_id, now=now, how=gone):
        return False
    logger.warning("run %s of %s cancelled on request: %s", *delivery.at(), gone)
    return True


def _take(
    db: recording.Connection,
    delivery: Delivery,
    previous: Owner | None,
    me: Owner,
    losses: int,
    *,
    now: datetime,
) -> bool:
    taken = recording.take_over(
        db, delivery.run_id, previous=previous, owner=me, losses=losses, now=now
    )
    if taken:
        gone = "nobody" if previous is None else previous.described()
        logger.warning("run %s of %s taken over from %s: it is gone", *delivery.at(), gone)
    return taken


def _log_refused(delivery: Delivery, refused: Refused | None) -> None:
    if refused is None:
        return
    if refused.why is Refusal.FOREIGN:
        said = delivery.message().described()
        logger.error("%s refused: %s; the run is left as it is", said, refused.detail)
        return
    consequence = {
        Refusal.MISSING: "message dropped",
        Refusal.NOT_RUNNING: "not run again",
        Refusal.OWNED: "not run twice",
    }[refused.why]
    level = _LOG_LEVEL[refused.why]
    logger.log(level, "run %s of %s %s: %s", *delivery.at(), refused.detail, consequence)


def _give_up(
    db: recording.Connection, delivery: Delivery, given_up: rules.GiveUp, *, now: datetime
) -> None:
    """The run killed every process that ran it: fail it unrun (its retry policy applies)."""
    failed = recording.fail(
        db, delivery.run_id, error=given_up.error, now=now, worker_losses=given_up.losses
    )
    if failed:
        logger.error("run %s of %s failed: %s", *delivery.at(), given_up.error)
        retries.after_failure(db, delivery.run_id, error=given_up.error, now=now)


def still_owned(db: recording.Connection, owner: Owner | None, *, redelivered: bool) -> bool:
    """Whether ``owner`` still runs the run; a redelivery gives a dying owner a moment."""
    if owner is None:
        return False  # handed back: nobody holds it
    deadline = time.monotonic() + (OWNER_EXIT_GRACE_SECONDS if redelivered else 0.0)
    while recording.session_alive(db, session_name(owner.session)):
        if time.monotonic() >= deadline:
            return True
        time.sleep(0.05)
    return False
