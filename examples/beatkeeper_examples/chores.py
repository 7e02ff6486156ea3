"""Recurring chores: instances generated ahead from RRULEs, and reminders as they come due.

``generate_instances`` expands each chore's RRULE (read in the chore's time zone from its
``starts_on`` at its ``due_time``) over the ``horizon_days`` days starting today, and
inserts the instances that are missing; the unique ``(chore_id, due_date)`` makes a re-run,
or two overlapping runs, insert nothing twice. It stops at the chore's ``ends_on`` and at
the RRULE's own ``UNTIL``/``COUNT`` and skips the chore's ``skip_months``; as RFC 5545
says, a ``BYMONTHDAY=31`` rule simply has no instance in a shorter month.

``send_reminders`` runs every few minutes: every open instance due within ``lead_minutes``
(or already overdue) gets a reminder, at most one per ``cooldown_minutes``. The cooldown is
a Redis key with a TTL (cheap, and shared by every worker); the reminders table is the
safety net for a Redis that lost its keys.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from celery import shared_task
from dateutil.rrule import rrulestr
from sqlalchemy import Connection, Row, func, insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert

from beatkeeper_examples import db
from beatkeeper_examples.clock import instant

__all__ = ["generate_instances", "send_reminders"]


@shared_task(name="examples.chores.generate_instances")  # type: ignore[untyped-decorator]
def generate_instances(horizon_days: int = 14, now: str | None = None) -> dict[str, int]:
    """Insert the missing instances due in the ``horizon_days`` days starting today."""
    at = instant(now)
    created = existing = 0
    with db.connect().begin() as conn:
        rows = conn.execute(select(db.chores)).all()
        for chore in rows:
            wanted = instances_of(chore, at=at, horizon_days=horizon_days)
            made = _insert_missing(conn, chore.id, wanted)
            created, existing = created + made, existing + len(wanted) - made
    return {"chores": len(rows), "created": created, "existing": existing}


def instances_of(chore: Row[Any], *, at: datetime, horizon_days: int) -> list[datetime]:
    """The chore's local due times in the ``horizon_days`` days from ``at``'s local date."""
    zone = ZoneInfo(chore.time_zone)
    today = at.astimezone(zone).date()
    last = today + timedelta(days=horizon_days - 1)  # today counts as the first day
    if chore.ends_on is not None:
        last = min(last, chore.ends_on)
    if last < today:
        return []
    start = datetime.combine(chore.starts_on, chore.due_time)
    rule = rrulestr(chore.rrule, dtstart=start)
    window = rule.between(
        datetime.combine(today, time.min), datetime.combine(last, time.max), inc=True
    )
    skipped = set(chore.skip_months or ())
    return [local.replace(tzinfo=zone) for local in window if local.month not in skipped]


def _insert_missing(conn: Connection, chore_id: int, due: list[datetime]) -> int:
    if not due:
        return 0
    rows = [
        # A wall-clock time in a spring-forward gap keeps the offset from before the gap.
        {"chore_id": chore_id, "due_date": local.date(), "due_at": local.astimezone(UTC)}
        for local in due
    ]
    statement = pg_insert(db.chore_instances).on_conflict_do_nothing(
        index_elements=["chore_id", "due_date"]
    )
    return len(conn.execute(statement.returning(db.chore_instances.c.id), rows).all())


@shared_task(name="examples.chores.send_reminders")  # type: ignore[untyped-decorator]
def send_reminders(
    lead_minutes: int = 30, cooldown_minutes: int = 120, now: str | None = None
) -> dict[str, int]:
    """Remind about open instances due within ``lead_minutes``, once per cooldown each."""
    at = instant(now)
    engine = db.connect()
    cooldown = timedelta(minutes=cooldown_minutes)
    counts = {"due": 0, "overdue": 0, "sent": 0, "cooling_down": 0}
    with engine.begin() as conn:
        due = conn.execute(
            select(db.chore_instances.c.id, db.chore_instances.c.due_at)
            .where(db.chore_instances.c.done_at.is_(None))
            .where(db.chore_instances.c.due_at <= at + timedelta(minutes=lead_minutes))
            .order_by(db.chore_instances.c.due_at)
        ).all()
        for instance_id, due_at in due:
            kind = "overdue" if due_at < at else "due"
            counts[kind] += 1
            key = f"{db.schema_of(engine)}:reminder:{instance_id}"
            if not _cool(key, cooldown) or _recently_reminded(conn, instance_id, at - cooldown):
                counts["cooling_down"] += 1
                continue
            conn.execute(
                insert(db.reminders).values(instance_id=instance_id, kind=kind, sent_at=at)
            )
            counts["sent"] += 1
    return counts


def _cool(key: str, cooldown: timedelta) -> bool:
    """Start the cooldown for ``key``; False when it is already running."""
    return bool(db.redis_client().set(key, "1", nx=True, ex=max(1, int(cooldown.total_seconds()))))


def _recently_reminded(conn: Connection, instance_id: int, since: datetime) -> bool:
    last = conn.execute(
        select(func.max(db.reminders.c.sent_at)).where(db.reminders.c.instance_id == instance_id)
    ).scalar()
    return last is not None and last > since
