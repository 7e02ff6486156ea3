"""Event lifecycle: confirmed and ongoing events whose end has passed become completed.

The sweep runs every five minutes, so an event leaves public discovery at most five
minutes after it ends. End times are ``timestamptz``: an event entered as "18:00 in
Auckland" ends at the same instant whatever zone the worker or the database runs in, and
the comparison is with an aware now. It is a bulk UPDATE, in batches of ``batch_size``
rows each committed on its own (``FOR UPDATE SKIP LOCKED``: an overlapping run takes other
rows), so a backlog after downtime never holds one long transaction. The status condition
makes a late, repeated or concurrent run harmless; events without an end, drafts and
cancelled events are never touched, and nothing is deleted.
"""

from __future__ import annotations

import logging

from celery import shared_task
from sqlalchemy import select, update

from beatkeeper_examples import db, tables
from beatkeeper_examples.clock import instant

__all__ = ["ENDING", "complete_ended"]

#: The statuses an event is completed from.
ENDING = ("confirmed", "ongoing")
log = logging.getLogger(__name__)


@shared_task(name="examples.events.complete_ended")  # type: ignore[untyped-decorator]
def complete_ended(batch_size: int = 1000, now: str | None = None) -> dict[str, int]:
    """Mark every confirmed or ongoing event that ended before now as completed."""
    at = instant(now)
    e = tables.events
    completed = 0
    while True:
        ended = (
            select(e.c.id)
            .where(e.c.status.in_(ENDING), e.c.ends_at.is_not(None), e.c.ends_at < at)
            .limit(batch_size)
            .with_for_update(skip_locked=True)
        )
        with db.connect().begin() as conn:
            count = conn.execute(
                update(e)
                .where(e.c.id.in_(ended.scalar_subquery()))
                .values(status="completed", completed_at=at)
            ).rowcount
        completed += count
        if count < batch_size:
            break
    log.info("events completed: %d", completed)
    return {"completed": completed}
