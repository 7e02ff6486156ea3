"""What a worker records when Celery revoked a run that a person asked to cancel.

Beat broadcasts ``revoke(terminate=True)`` for a run with an open cancel request
(``beatkeeper_worker.cancelling``). Celery then sends ``task_revoked`` in the worker's main
process: ``terminated`` when it killed the pool process running the task, or not when a
message for an id it had been told to revoke arrives later (a retry, a redelivery), which it
drops unrun. Either way the run is recorded ``cancelled`` with the request's reason, if a
request is open (``Replace`` revokes runs it has recorded cancelled already, and an
administrator's own revoke has no request: neither changes a row here).

A run whose task failed while its cancel was pending (a task that handles ``SIGTERM`` and
raises, say) is recorded ``cancelled`` too, with its error in the message, and never retried
(``failed_instead``). A run that succeeded first keeps its success.

Each write is one transaction on a short-lived connection of the main process (none kept
across the fork), as for the other messages the main process records (``unstarted``).
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Any

from beatkeeper.store import Connection, DatabaseUnavailable, cancellations, sessions
from beatkeeper_worker.pool_process import line

__all__ = ["failed_instead", "on_revoked"]

logger = logging.getLogger("beatkeeper.worker")


def on_revoked(request: Any = None, *, terminated: bool = False, **_: Any) -> None:
    """``task_revoked``: record the run cancelled if a person asked for it."""
    if request is None or getattr(request, "beatkeeper_schedule_id", None) is None:
        return  # not a run: the user's own task
    try:
        run_id = uuid.UUID(str(request.id))
    except ValueError:
        return
    worker = getattr(request, "hostname", None) or "its worker"
    how = f"stopped on {worker}" if terminated else f"its message was dropped by {worker}"

    def record(db: Connection) -> None:
        if cancellations.cancel_requested(db, run_id, now=datetime.now(UTC), how=how):
            logger.warning("run %s cancelled on request: %s", run_id, how)

    try:
        with sessions.main_process_transaction() as db:
            record(db)
    except DatabaseUnavailable as down:
        # Beat records it cancelled at the request's deadline, so nothing is lost for good.
        logger.error("run %s revoked, not recorded cancelled yet: %s", run_id, line(down))  # noqa: TRY400


def failed_instead(db: Connection, run_id: uuid.UUID, error: str, *, now: datetime) -> bool:
    """Record a run that failed while its cancel was pending ``cancelled``; False if none was."""
    return cancellations.cancel_requested(db, run_id, now=now, how=f"the task ended with {error}")
