"""Who owns a running run, and when a redelivered message may take it over.

A run's ``worker`` column names the host, pid and per-process token of the pool process
running it (``ledger.Process.owner``); the token is also the ``application_name`` of that
process's sessions (``session_name``). A message for a ``running`` run may take it over only
when no session with the owner's token exists any more: the owning process died (SIGKILL,
OOM; its socket closed and its backend exited) and the message came back through
``acks_late``/``task_reject_on_worker_lost`` or a visibility timeout. A live owner keeps its
run, so a duplicate delivered while the body runs elsewhere is dropped. A run that has killed
``MAX_WORKER_LOSSES`` processes is failed instead (its retry policy still applies); one
someone asked to cancel is recorded ``cancelled`` instead (``beatkeeper.store.cancellations``).

This module decides and writes one take-over; it must not talk to Celery.
"""

from __future__ import annotations

import logging
import re
import time
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import Connection, text, update

from beatkeeper.states import RunState
from beatkeeper.store import cancellations
from beatkeeper.store.models import runs
from beatkeeper.store.runs import transition
from beatkeeper_worker import matching, retries

if TYPE_CHECKING:
    from beatkeeper_worker.ledger import Delivery

__all__ = [
    "MAX_WORKER_LOSSES",
    "OWNER_EXIT_GRACE_SECONDS",
    "session_name",
    "still_owned",
    "take_over",
]

logger = logging.getLogger("beatkeeper.worker")

OWNER_EXIT_GRACE_SECONDS = 2.0
#: A run whose body killed this many processes (segfault, OOM killer, a hard exit) is failed
#: instead of handed to the next one, which it would kill in turn.
MAX_WORKER_LOSSES = 3
_SESSION = re.compile(r"session ([0-9a-f]{12})\)$")


def session_name(token: str) -> str:
    """The ``application_name`` of a worker process's sessions (at most 63 bytes)."""
    return f"beatkeeper-worker {token}"


def take_over(db: Connection, delivery: Delivery, me: str, *, now: datetime) -> bool:
    """Run ``delivery``'s run after all if it is ``running`` for a process that is gone.

    A message that is not one of its run's (``matching``) is refused here, the row untouched.
    """
    run = (delivery.run_id, delivery.schedule)
    row = matching.read_run(db, delivery.run_id)
    if row is None:
        logger.warning("run %s of %s does not exist: message dropped", *run)
        return False
    wrong = matching.mismatch(delivery.message(), row)
    if wrong is not None:
        logger.error(
            "%s refused: %s; the run is left as it is", delivery.message().described(), wrong
        )
        return False
    if row.state != RunState.RUNNING:
        logger.info("run %s of %s is %s: not run again", *run, row.state)
        return False
    if row.worker == me or still_owned(db, row.worker, redelivered=delivery.redelivered):
        logger.info("run %s of %s is running on %s: not run twice", *run, row.worker)
        return False
    gone = f"its worker ({row.worker or 'none'}) is gone; not run again"
    if cancellations.cancel_requested(db, delivery.run_id, now=now, how=gone):
        logger.warning("run %s of %s cancelled on request: %s", *run, gone)
        return False
    losses = row.worker_losses + (row.worker is not None)  # NULL: handed back, not lost
    if losses >= MAX_WORKER_LOSSES:
        return _give_up(db, delivery, row.worker, losses, now=now)
    taken = db.execute(
        update(runs)
        .where(runs.c.id == delivery.run_id, runs.c.state == RunState.RUNNING.value)
        .where(runs.c.worker.is_not_distinct_from(row.worker))
        .values(worker=me, started_at=now, finished_at=None, updated_at=now, worker_losses=losses)
        .returning(runs.c.id)
    ).first()
    if taken is not None:
        logger.warning("run %s of %s taken over from %s: it is gone", *run, row.worker)
    return taken is not None


def _give_up(
    db: Connection, delivery: Delivery, owner: str | None, losses: int, *, now: datetime
) -> bool:
    """The run killed every process that ran it: fail it (retry policy applies) unrun."""
    error = (
        f"WorkerLost: {losses} worker processes died running this run (the last: {owner}); "
        "not run again"
    )
    if transition(db, delivery.run_id, RunState.FAILED, now=now, error=error, worker_losses=losses):
        logger.error("run %s of %s failed: %s", delivery.run_id, delivery.schedule, error)
        retries.settle_failure(db, delivery.run_id, error=error, now=now)
    return False


def still_owned(db: Connection, owner: str | None, *, redelivered: bool) -> bool:
    """Whether ``owner`` still runs the run; a redelivery gives a dying owner a moment.

    A killed process's backend exits as soon as PostgreSQL reads the closed socket, which
    can be a moment after the worker already requeued the message.
    """
    deadline = time.monotonic() + (OWNER_EXIT_GRACE_SECONDS if redelivered else 0.0)
    while _alive(db, owner):
        if time.monotonic() >= deadline:
            return True
        time.sleep(0.05)
    return False


def _alive(db: Connection, owner: str | None) -> bool:
    """Whether the process named ``owner`` (a ``worker`` column value) still has a session."""
    found = _SESSION.search(owner or "")
    if found is None:
        return False  # released (NULL) or not ours: nobody holds it
    query = text("SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE application_name = :name)")
    return bool(db.execute(query, {"name": session_name(found.group(1))}).scalar())
