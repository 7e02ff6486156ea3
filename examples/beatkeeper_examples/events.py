"""Lifecycle sweep: mark events whose end time has passed as completed.

One bulk UPDATE per run. End times are stored as ``timestamptz``, so an event entered as
"18:00 in Auckland" ends at the same instant whatever zone the worker or the database is
in; the ``status = 'scheduled'`` condition makes a late, repeated or concurrent run harmless.
"""

from __future__ import annotations

from celery import shared_task
from sqlalchemy import update

from beatkeeper_examples import db
from beatkeeper_examples.clock import instant

__all__ = ["complete_ended"]


@shared_task(name="examples.events.complete_ended")  # type: ignore[untyped-decorator]
def complete_ended(now: str | None = None) -> dict[str, int]:
    """Complete every scheduled event that ended at or before now."""
    at = instant(now)
    with db.connect().begin() as conn:
        result = conn.execute(
            update(db.events)
            .where(db.events.c.status == "scheduled", db.events.c.ends_at <= at)
            .values(status="completed", completed_at=at)
        )
    return {"completed": result.rowcount}
