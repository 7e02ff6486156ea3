"""The due/overdue scan: reminders for open chore instances, with a cooldown.

Every few minutes, each open instance (``available``, ``claimed``, ``in_progress``) whose
``due_at`` is within ``lead_minutes`` gets a ``due_soon`` reminder for its assignee, and
one already past due an ``overdue`` reminder; the same reminder (user, kind, instance) is
not repeated within ``cooldown_minutes``.

Where the cooldown lives: the database is the truth, Redis a cache in front of it. The
scan first asks Redis (one ``MGET`` for the batch) and skips what it finds; for the rest
the ``notifications`` table decides (a row for the same user, kind and link younger than
the cooldown). The Redis keys are set only after the notifications' commit: a key set
before a commit that then failed would silence a reminder that was never written, for a
whole cooldown. A Redis that lost its keys only costs queries, never a duplicate.

An instance without an assignee gets no reminder: there is nobody to send it to.

Delivery is the outbox in ``dispatch``: the rows are committed first, then sent, so a
failed send or a crash is delivered by the next scan.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from celery import shared_task
from sqlalchemy import Connection, Engine, Row, and_, exists, insert, select

from beatkeeper_examples import db, dispatch, tables
from beatkeeper_examples.clock import instant

__all__ = ["OPEN", "scan_due_instances"]

OPEN = ("available", "claimed", "in_progress")
log = logging.getLogger(__name__)
i, n = tables.chore_instances, tables.notifications


@shared_task(name="examples.chores.scan_due_instances")  # type: ignore[untyped-decorator]
def scan_due_instances(
    lead_minutes: int = 60,
    cooldown_minutes: int = 120,
    batch_size: int = 500,
    now: str | None = None,
) -> dict[str, int]:
    """Write the reminders due now (at most ``batch_size``), then deliver what is pending."""
    at = instant(now)
    cooldown = timedelta(minutes=cooldown_minutes)
    engine = db.connect()
    with engine.begin() as conn:
        found = _open_instances(conn, at + timedelta(minutes=lead_minutes), batch_size)
        cached = _cooling_in_redis(engine, found, at)
        fresh = [row for row in found if _key(engine, row, at) not in cached]
        written = [row for row in fresh if _remind(conn, row, at=at, cooldown=cooldown)]
    # After the commit: a key must never stand for a reminder that was not written.
    _start_cooldowns(engine, written, at, cooldown)
    counts = {
        "due_soon": sum(row.due_at > at for row in found),
        "overdue": sum(row.due_at <= at for row in found),
        "reminded": len(written),
        "cooling_down": len(found) - len(written),
    }
    counts |= dispatch.deliver_pending(engine, now=at)
    log.info("chore reminders: %(reminded)d written, %(delivered)d delivered", counts)
    return counts


def _open_instances(conn: Connection, until: datetime, limit: int) -> list[Row[Any]]:
    c = tables.chores
    return list(
        conn.execute(
            select(i.c.id, i.c.due_at, i.c.assignee_id, c.c.title)
            .join(c, c.c.id == i.c.chore_id)
            .where(i.c.status.in_(OPEN), i.c.due_at <= until, i.c.assignee_id.is_not(None))
            .order_by(i.c.due_at, i.c.id)
            .limit(limit)
            # An overlapping scan skips these rows instead of writing the same reminders.
            .with_for_update(of=i, skip_locked=True)
        )
    )


def _kind(row: Row[Any], at: datetime) -> str:
    return "overdue" if row.due_at <= at else "due_soon"


def _key(engine: Engine, row: Row[Any], at: datetime) -> str:
    kind = _kind(row, at)
    return f"{db.schema_of(engine)}:cooldown:{row.assignee_id}:{kind}:chore_instance:{row.id}"


def _cooling_in_redis(engine: Engine, rows: list[Row[Any]], at: datetime) -> set[str]:
    keys = [_key(engine, row, at) for row in rows]
    if not keys:
        return set()
    values = db.redis_client().mget(keys)
    return {key for key, value in zip(keys, values, strict=True) if value is not None}


def _remind(conn: Connection, row: Row[Any], *, at: datetime, cooldown: timedelta) -> bool:
    """Write the reminder unless the database holds one inside the cooldown."""
    kind, link = _kind(row, at), f"chore_instance:{row.id}"
    recent = exists().where(
        and_(n.c.user_id == row.assignee_id, n.c.kind == kind, n.c.link == link),
        n.c.created_at > at - cooldown,
    )
    if conn.execute(select(recent)).scalar():
        return False
    when = "is overdue" if kind == "overdue" else f"is due at {row.due_at:%H:%M} UTC"
    conn.execute(
        insert(n).values(
            user_id=row.assignee_id,
            kind=kind,
            link=link,
            title=f"{row.title} {when}",
            body=f"{row.title} {when}.",
            created_at=at,
        )
    )
    return True


def _start_cooldowns(
    engine: Engine, rows: list[Row[Any]], at: datetime, cooldown: timedelta
) -> None:
    if not rows:
        return
    seconds = max(1, int(cooldown.total_seconds()))
    with db.redis_client().pipeline(transaction=False) as pipe:
        for row in rows:
            pipe.set(_key(engine, row, at), "1", ex=seconds)
        pipe.execute()
