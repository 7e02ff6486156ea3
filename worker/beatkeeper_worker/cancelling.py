"""Beat's part in cancelling a running run: revoke its Celery task, and stop waiting in time.

A person's cancel of a ``running`` run is a row in ``cancel_requests``
(``beatkeeper.store.cancellations``), as the operator and the CLI have no broker. Beat has
one, and a tick already wakes on the request's ``NOTIFY``, so ``Canceller.act`` runs at the
start of a tick whenever a request is due for a look: it broadcasts
``revoke(terminate=True, signal=SIGTERM)`` for the run's task id (the run id), and the
worker whose pool process it kills records the run ``cancelled`` (``revoked``). The revoke
is sent again every ``RESEND`` (a worker that was disconnected from the broker misses a
broadcast), and once ``DEADLINE`` has passed since the first one with the run still
``running``, Beat records it ``cancelled`` itself: its worker is gone, or its pool cannot
terminate a task, and a cancel must not stay pending for ever. A run that finished
meanwhile keeps its outcome; a retry of it waiting in the database is cancelled.

Requests are claimed ``FOR UPDATE SKIP LOCKED`` and every move is conditional, so with
several Beats each request is acted on by one at a time and a run is cancelled once. This
module decides nothing about which run to cancel; people do.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from celery import Celery

from beatkeeper.states import RunState
from beatkeeper.store import Connection, cancellations

__all__ = ["DEADLINE", "RESEND", "SIGNAL", "Canceller"]

log = logging.getLogger(__name__)

#: What ends the task's pool process: its default action ends it at once, and a task that
#: must clean up can handle it (as Celery's own default, and as ``Replace`` sends).
SIGNAL = "SIGTERM"
RESEND = timedelta(seconds=10)
DEADLINE = timedelta(seconds=60)
LIMIT = 100  # requests acted on per look; the rest on the next tick
_LOOK_NOW = datetime.min.replace(tzinfo=UTC)


class Canceller:
    """Acts on the cancel requests of one Beat replica."""

    def __init__(self, app: Celery) -> None:
        self._app = app
        #: When a request is next due for a look (None: none open). Beat's ``next_wake``
        #: keeps it up to date, so a tick claims requests only when one is due; the first
        #: tick looks at once, for requests made while no Beat ran.
        self.check_at: datetime | None = _LOOK_NOW

    def due(self, now: datetime) -> bool:
        return self.check_at is not None and self.check_at <= now

    def act(self, db: Connection, now: datetime) -> int:
        """Revoke, give up on or close every request due; the runs it recorded cancelled."""
        cancelled = 0
        with db.begin():
            to_revoke = []
            for request in cancellations.claim_open(db, now=now, limit=LIMIT):
                if request.state is RunState.RUNNING and not self._past_deadline(request, now):
                    to_revoke.append(request)
                else:
                    cancelled += self._close(db, request, now=now)
            if to_revoke:
                self._revoke(to_revoke)
                ids = [r.run_id for r in to_revoke]
                cancellations.revoked(db, ids, now=now, resend=RESEND, deadline=DEADLINE)
        return cancelled

    def _past_deadline(self, request: cancellations.OpenRequest, now: datetime) -> bool:
        return request.revoked_at is not None and now >= request.revoked_at + DEADLINE

    def _close(self, db: Connection, request: cancellations.OpenRequest, *, now: datetime) -> int:
        """A request whose run is past the deadline, waits for a retry, or has finished."""
        if request.state is RunState.RUNNING:
            waited = int(DEADLINE.total_seconds())
            how = (
                f"no worker reported it stopped within {waited}s of the revoke (its worker "
                "is gone, or its pool cannot terminate a task); an outcome it still reports "
                "is not recorded"
            )
            return _cancel(db, request, how, now=now, level=logging.WARNING)
        if request.state in cancellations.WAITING:  # a retry of it (or its message) waits
            return _cancel(db, request, "not run again", now=now, level=logging.INFO)
        log.info("run %s ended %s before its cancel took effect", request.run_id, request.state)
        cancellations.settle(db, [request.run_id], now=now)
        return 0

    def _revoke(self, requests: list[cancellations.OpenRequest]) -> None:
        """Broadcast the revoke; a broker error propagates, so Beat backs off and retries."""
        ids = [str(r.run_id) for r in requests]
        with self._app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1)
            self._app.control.revoke(ids, terminate=True, signal=SIGNAL, connection=connection)
        for r in requests:
            log.info(
                "asked the workers to stop run %s (running on %s): %s",
                *(r.run_id, r.worker or "an unknown worker", r.reason),
            )


def _cancel(
    db: Connection, request: cancellations.OpenRequest, how: str, *, now: datetime, level: int
) -> int:
    if not cancellations.cancel_requested(db, request.run_id, now=now, how=how):
        return 0
    log.log(level, "run %s cancelled: %s: %s", request.run_id, request.reason, how)
    return 1
