"""Weekly clean-up: old notifications, and finished chore instances, deleted in batches.

Each batch is its own short transaction (``DELETE … WHERE id IN (SELECT … LIMIT n FOR
UPDATE SKIP LOCKED)``), so the clean-up never holds many locks or a long transaction, and
a run cut short by its time limit has still deleted whole batches; the next run continues.
``max_batches`` bounds one run. Undelivered notifications are kept whatever their age:
deleting them would lose what the outbox still has to send. To switch the clean-up off,
suspend its Schedule (``spec.suspend: true``).
"""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import shared_task
from sqlalchemy import ColumnElement, Engine, Table, delete, select

from beatkeeper_examples import db, tables
from beatkeeper_examples.clock import instant

__all__ = ["prune_old_data"]

log = logging.getLogger(__name__)


@shared_task(name="examples.chores.prune_old_data")  # type: ignore[untyped-decorator]
def prune_old_data(
    notification_days: int = 90,
    instance_days: int = 180,
    batch_size: int = 1000,
    max_batches: int = 100,
    now: str | None = None,
) -> dict[str, int]:
    """Delete delivered notifications and completed/expired instances older than the windows."""
    at = instant(now)
    engine = db.connect()
    n, i = tables.notifications, tables.chore_instances
    old_notifications = (n.c.created_at < at - timedelta(days=notification_days)) & (
        n.c.dispatched_at.is_not(None)
    )
    old_instances = (i.c.due_at < at - timedelta(days=instance_days)) & i.c.status.in_(
        ("completed", "expired")
    )
    counts = {
        "notifications": _prune(engine, n, old_notifications, batch_size, max_batches),
        "instances": _prune(engine, i, old_instances, batch_size, max_batches),
    }
    log.info("pruned %(notifications)d notifications, %(instances)d instances", counts)
    return counts


def _prune(
    engine: Engine, table: Table, old: ColumnElement[bool], batch_size: int, max_batches: int
) -> int:
    deleted = 0
    for _ in range(max_batches):
        batch = select(table.c.id).where(old).limit(batch_size).with_for_update(skip_locked=True)
        with engine.begin() as conn:
            count = conn.execute(
                delete(table).where(table.c.id.in_(batch.scalar_subquery()))
            ).rowcount
        deleted += count
        if count < batch_size:
            break
    return deleted
