"""Daily outlook: a notification at each user's local 06:45 on weekdays, 08:30 at weekends.

``send_due_outlooks`` runs every 15 minutes and works zone by zone: for each IANA zone its
users live in, it takes the local time now, picks the slot for that local day, and when the
slot has been reached sends to the zone's users in one INSERT … SELECT. The unique key
``(user_id, local_date)`` makes every later run that day (and any overlapping run) send
nothing more, and a run that comes late after downtime still sends that day's outlook.

``send_outlook`` is the pinned variant: a Schedule per slot fires it in one zone, and it
sends to one team's users for their own local date, with the same unique key.
"""

from __future__ import annotations

from datetime import datetime, time
from zoneinfo import ZoneInfo

from celery import shared_task
from sqlalchemy import ColumnElement, Connection, bindparam, select
from sqlalchemy.dialects.postgresql import insert as pg_insert

from beatkeeper_examples import db
from beatkeeper_examples.clock import instant

__all__ = ["send_due_outlooks", "send_outlook", "slot_for"]


def slot_for(local: datetime, *, weekday_time: time, weekend_time: time) -> time:
    """The delivery time of ``local``'s calendar day (Saturday and Sunday are the weekend)."""
    return weekend_time if local.weekday() >= 5 else weekday_time


@shared_task(name="examples.outlook.send_due_outlooks")  # type: ignore[untyped-decorator]
def send_due_outlooks(
    weekday_time: str = "06:45", weekend_time: str = "08:30", now: str | None = None
) -> dict[str, int]:
    """Send today's outlook to every user whose local slot has been reached."""
    at = instant(now)
    weekday, weekend = time.fromisoformat(weekday_time), time.fromisoformat(weekend_time)
    counts = {"zones": 0, "zones_due": 0, "sent": 0}
    with db.connect().begin() as conn:
        zones = conn.execute(select(db.users.c.time_zone).distinct()).scalars().all()
        for zone in zones:
            counts["zones"] += 1
            local = at.astimezone(ZoneInfo(zone))
            if local.time() < slot_for(local, weekday_time=weekday, weekend_time=weekend):
                continue
            counts["zones_due"] += 1
            counts["sent"] += _send(conn, db.users.c.time_zone == zone, local, at)
    return counts


@shared_task(name="examples.outlook.send_outlook")  # type: ignore[untyped-decorator]
def send_outlook(team: str, now: str | None = None) -> dict[str, int | str]:
    """Send today's outlook to ``team``'s users (each for their own local date)."""
    at = instant(now)
    sent = 0
    with db.connect().begin() as conn:
        zones = conn.execute(
            select(db.users.c.time_zone).where(db.users.c.team == team).distinct()
        ).scalars()
        for zone in list(zones):
            members = (db.users.c.team == team) & (db.users.c.time_zone == zone)
            sent += _send(conn, members, at.astimezone(ZoneInfo(zone)), at)
    return {"team": team, "sent": sent}


def _send(conn: Connection, who: ColumnElement[bool], local: datetime, at: datetime) -> int:
    """Insert an outlook for ``local``'s date for each user matched by ``who``; count them."""
    rows = select(db.users.c.id, bindparam("day", local.date()), bindparam("at", at)).where(who)
    inserted = conn.execute(
        pg_insert(db.outlooks)
        .from_select(["user_id", "local_date", "sent_at"], rows)
        .on_conflict_do_nothing(index_elements=["user_id", "local_date"])
        .returning(db.outlooks.c.id)
    ).all()
    return len(inserted)
