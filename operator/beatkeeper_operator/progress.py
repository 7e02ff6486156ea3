"""What the operator counts about its own work, for ``/metrics`` on the metrics port.

The handlers report each reconcile's outcome and each failed attempt here; this module turns
them into the operator's Prometheus metrics (defined with every other metric in
``beatkeeper.observability.metrics``). A Schedule change counts as unreconciled from the
moment kopf first started its handler (kopf's ``started``, which survives retries and
restarts: kopf keeps it in the object's annotations) until an attempt succeeds, so it
includes a reconcile still waiting for a database connection or a thread.
``oldest_unreconciled_seconds`` is what an alert on a stuck operator (a database down, a bug
failing one Schedule forever, a backlog) watches. No I/O here.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from beatkeeper.observability import metrics

__all__ = ["Progress"]


class Progress:
    """The Schedule changes not yet reconciled, by uid, with when kopf first started each."""

    def __init__(self) -> None:
        self._pending: dict[str, datetime] = {}

    def began(self, uid: str | None, *, started: datetime) -> None:
        """kopf started (or retries) the reconcile of a change it first started at ``started``."""
        if uid:
            since = started if started.tzinfo else started.replace(tzinfo=UTC)
            self._pending.setdefault(uid, since)

    def reconciled(self, uid: str | None, *, outcome: str) -> None:
        """One reconcile finished with this outcome (the Ready reason)."""
        metrics.RECONCILES.labels(outcome=outcome).inc()
        self._pending.pop(uid or "", None)

    def failed(self, uid: str | None, *, started: datetime | None, error: str) -> None:
        """One attempt failed (``error``: DatabaseUnavailable or the exception's type)."""
        outcome = error if error == "DatabaseUnavailable" else "Error"
        metrics.RECONCILES.labels(outcome=outcome).inc()
        metrics.OPERATOR_ERRORS.labels(error=error).inc()
        self.began(uid, started=started or datetime.now(UTC))

    def forgotten(self, uid: str | None) -> None:
        """The Schedule is gone: nothing of it is left to reconcile."""
        self._pending.pop(uid or "", None)

    def oldest_unreconciled_seconds(self) -> float:
        if not self._pending:
            return 0.0
        oldest = min(self._pending.values())
        return max(0.0, time.time() - oldest.timestamp())

    def publish(self) -> None:
        """Make the gauge read this object on every scrape."""
        metrics.OLDEST_UNRECONCILED.set_function(self.oldest_unreconciled_seconds)
