"""What the operator counts about its own work, for ``/metrics`` on the metrics port.

The handlers report each reconcile's outcome and each failed attempt here; this module turns
them into the operator's Prometheus metrics (defined with every other metric in
``beatkeeper.observability.metrics``). A Schedule change counts as unreconciled from the
moment kopf first started its handler (kopf's ``started``, which survives retries) until an
attempt finishes; ``oldest_unreconciled_seconds`` is what an alert on a stuck operator (a
database down, a bug failing one Schedule forever) watches. No I/O here.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from beatkeeper.observability import metrics

__all__ = ["Progress"]


class Progress:
    """The Schedule changes being retried, by uid, with when each was first started."""

    def __init__(self) -> None:
        self._pending: dict[str, datetime] = {}

    def reconciled(self, uid: str | None, *, outcome: str) -> None:
        """One reconcile finished with this outcome (the Ready reason)."""
        metrics.RECONCILES.labels(outcome=outcome).inc()
        self._pending.pop(uid or "", None)

    def failed(self, uid: str | None, *, started: datetime | None, error: str) -> None:
        """One attempt failed (``error``: DatabaseUnavailable or the exception's type)."""
        outcome = error if error == "DatabaseUnavailable" else "Error"
        metrics.RECONCILES.labels(outcome=outcome).inc()
        metrics.OPERATOR_ERRORS.labels(error=error).inc()
        if uid:
            since = started or datetime.now(UTC)
            self._pending.setdefault(uid, since if since.tzinfo else since.replace(tzinfo=UTC))

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
