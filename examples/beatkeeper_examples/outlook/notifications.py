"""The morning notification: each user's outlook at their local 06:45 on weekdays and
08:30 at weekends, or at the times they chose.

A single run at 06:45 UTC would reach a user in Auckland at 19:45, so the time-zone
conversion happens inside the task instead: it runs every 15 minutes and, for each user
with notifications on, reads the local time in the user's zone and picks the slot of that
local day (the user's own preference, else the Schedule's defaults). Once the slot has
been reached that day, the user's outlook for their local date is claimed (``notified_at``
set by a conditional UPDATE) and a notification row written, in one transaction; then the
outbox in ``dispatch`` delivers it. Every later run that day finds the outlook claimed and
sends nothing; a run that comes late after downtime still sends that day's outlook. A
user whose outlook was not pre-generated (not active yesterday, or generation failed)
gets one generated on the spot: the notification is never skipped for want of content.

A user whose ``time_zone`` is not an IANA name is skipped with a warning naming them.

``enabled: false`` turns every notification off (the global switch); a user's
``outlook_enabled`` turns off theirs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from celery import shared_task
from sqlalchemy import Connection, Row, insert, select, update

from beatkeeper_examples import db, dispatch, tables
from beatkeeper_examples.clock import instant, time_of_day
from beatkeeper_examples.outlook import generation

__all__ = ["send_notifications", "slot_for"]

log = logging.getLogger(__name__)
u, o = tables.users, tables.daily_outlooks


def slot_for(local: datetime, *, weekday: time, weekend: time) -> time:
    """The delivery time of ``local``'s calendar day (Saturday and Sunday are the weekend)."""
    return weekend if local.weekday() >= 5 else weekday


@shared_task(name="examples.outlook.send_notifications")  # type: ignore[untyped-decorator]
def send_notifications(
    weekday_time: str = "06:45",
    weekend_time: str = "08:30",
    enabled: bool = True,
    batch_size: int = 500,
    now: str | None = None,
) -> dict[str, Any]:
    """Notify every user whose local slot has been reached today and who was not yet."""
    at = instant(now)
    if not enabled:
        log.info("daily outlook notifications are switched off")
        return {"success": True, "enabled": False, "notifications_sent": 0}
    defaults = time_of_day("weekday_time", weekday_time), time_of_day("weekend_time", weekend_time)
    counts = {"total_users": 0, "due_users": 0, "notifications_sent": 0, "invalid_time_zone": 0}
    engine = db.connect()
    after = 0
    while True:
        with engine.begin() as conn:
            users = _users(conn, after, batch_size)
            zones = [(user, _zone(user)) for user in users]
            counts["invalid_time_zone"] += sum(zone is None for _, zone in zones)
            due = [
                (u, local) for u, zone in zones if zone and (local := _due(u, zone, at, defaults))
            ]
            templates = conn.execute(select(tables.content_templates)).all() if due else []
            for user, local in due:
                counts["notifications_sent"] += _notify(conn, user, local, at, templates)
        counts["total_users"] += len(users)
        counts["due_users"] += len(due)
        if len(users) < batch_size:
            break
        after = users[-1].id
    delivery = dispatch.deliver_pending(engine, now=at)
    log.info("daily outlook notifications: %s, %s", counts, delivery)
    return {"success": True, "enabled": True, **counts, "failed_count": delivery["delivery_failed"]}


def _users(conn: Connection, after: int, limit: int) -> Sequence[Row[Any]]:
    return list(
        conn.execute(
            select(
                u.c.id, u.c.name, u.c.time_zone, u.c.outlook_weekday_time, u.c.outlook_weekend_time
            )
            .where(u.c.id > after, u.c.outlook_enabled)
            .order_by(u.c.id)
            .limit(limit)
        )
    )


def _due(
    user: Row[Any], zone: ZoneInfo, at: datetime, defaults: tuple[time, time]
) -> datetime | None:
    """The user's local now if their slot has been reached today, else None."""
    local = at.astimezone(zone)
    slot = slot_for(
        local,
        weekday=user.outlook_weekday_time or defaults[0],
        weekend=user.outlook_weekend_time or defaults[1],
    )
    return local if local.time() >= slot else None


def _zone(user: Row[Any]) -> ZoneInfo | None:
    try:
        return ZoneInfo(user.time_zone)
    except (ValueError, KeyError):
        log.warning("user %s skipped: unknown time zone %r", user.id, user.time_zone)
        return None


def _notify(
    conn: Connection, user: Row[Any], local: datetime, at: datetime, templates: Sequence[Any]
) -> bool:
    day = local.date()
    template, content = generation.content_for(templates, user_id=user.id, name=user.name, day=day)
    fallback = {
        "user_id": user.id,
        "outlook_date": day,
        "template": template,
        "content": content,
        "generated_at": at,
    }
    generation.upsert_outlooks(conn, [fallback], force=False)
    claimed = conn.execute(
        update(o)
        .where(o.c.user_id == user.id, o.c.outlook_date == day, o.c.notified_at.is_(None))
        .values(notified_at=at)
        .returning(o.c.id, o.c.content)
    ).first()
    if claimed is None:
        return False
    conn.execute(
        insert(tables.notifications).values(
            user_id=user.id,
            kind="daily_outlook",
            link=f"daily_outlook:{claimed.id}",
            title=f"Your outlook for {day:%A}",
            body=claimed.content,
            created_at=at,
        )
    )
    return True
