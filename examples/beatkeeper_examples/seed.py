"""A few rows per example, placed around the moment the tables were created.

Enough for the first run of every example Schedule to find work (``beatkeeper dev`` shows
them succeed within minutes), and small enough that every run stays fast.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, insert

from beatkeeper_examples import tables

__all__ = ["TEMPLATES", "seed"]

_LONDON = ZoneInfo("Europe/London")

#: The outlook content templates; the weekly optimisation adjusts their weights.
TEMPLATES = {
    "spending": "Good morning {name}: your spending outlook for {date:%A %d %B}.",
    "saving": "{name}, one small saving idea for {date:%A}.",
    "goals": "{name}, here is where your goals stand on {date:%d %B}.",
}


def seed(conn: Connection, *, now: datetime) -> None:
    """Insert the example rows."""
    users = _users(conn, now)
    _chores(conn, now, users)
    _events(conn, now)
    _credits(conn, now, users)
    conn.execute(
        insert(tables.content_templates), [{"name": k, "body": v} for k, v in TEMPLATES.items()]
    )
    _posts(conn, now)


def _users(conn: Connection, now: datetime) -> list[int]:
    people = [
        ("aroha", "Pacific/Auckland", "kauri"),
        ("sam", "America/Los_Angeles", None),
        ("priya", "Asia/Kolkata", None),
        ("oliver", "Europe/London", "kauri"),
    ]
    rows = [
        {"name": name, "time_zone": zone, "household": home, "last_active_at": now}
        for name, zone, home in people
    ]
    return list(conn.execute(insert(tables.users).returning(tables.users.c.id), rows).scalars())


def _chores(conn: Connection, now: datetime, users: list[int]) -> None:
    pair = [users[0], users[3]]
    today = now.date()
    conn.execute(
        insert(tables.chores),
        [
            _chore("Water the plants", "FREQ=DAILY;INTERVAL=2", today, time(8), pair),
            _chore("Take the bins out", "FREQ=WEEKLY;BYDAY=TU", today, time(19), pair),
            _chore("Pay rent", "FREQ=MONTHLY;BYMONTHDAY=31", today, time(9), [users[3]]),
            # Due within the reminder lead window from the start, so reminders fire.
            _chore("Stand-up notes", "FREQ=DAILY", today, _soon(now), pair),
        ],
    )


def _soon(now: datetime) -> time:
    return (now + timedelta(minutes=10)).astimezone(_LONDON).time().replace(second=0, microsecond=0)


def _chore(title: str, rule: str, starts: date, due: time, who: list[int]) -> dict[str, Any]:
    return {
        "household": "kauri",
        "title": title,
        "rrule": rule,
        "time_zone": "Europe/London",
        "starts_on": starts,
        "due_time": due,
        "assignees": who,
    }


def _events(conn: Connection, now: datetime) -> None:
    hour = timedelta(hours=1)
    conn.execute(
        insert(tables.events),
        [
            {
                "title": "Workshop (ended)",
                "starts_at": now - 3 * hour,
                "ends_at": now - 2 * hour,
                "status": "confirmed",
            },
            {
                "title": "Webinar (ongoing)",
                "starts_at": now - hour,
                "ends_at": now + 3 * hour / 60,
                "status": "ongoing",
            },
            {
                "title": "Meetup (draft)",
                "starts_at": now - 3 * hour,
                "ends_at": now - 2 * hour,
                "status": "draft",
            },
            {
                "title": "Conference",
                "starts_at": now + 20 * hour,
                "ends_at": now + 30 * hour,
                "status": "confirmed",
            },
        ],
    )


def _credits(conn: Connection, now: datetime, users: list[int]) -> None:
    month_start = now.date().replace(day=1)
    conn.execute(
        insert(tables.subscriptions),
        [
            {"user_id": users[0], "tier": "premium", "started_on": month_start, "active": True},
            {"user_id": users[1], "tier": "standard", "started_on": month_start, "active": True},
            {"user_id": users[2], "tier": "standard", "started_on": month_start, "active": False},
        ],
    )
    hour = timedelta(hours=1)
    conn.execute(
        insert(tables.credit_holds),
        [
            {"user_id": users[0], "amount": 5, "reason": "render", "expires_at": now - hour},
            {"user_id": users[1], "amount": 7, "reason": "export", "expires_at": now + hour},
        ],
    )
    conn.execute(
        insert(tables.credit_transactions),
        [
            {"user_id": users[0], "amount": 50, "kind": "purchase", "status": "pending",
             "created_at": now - 25 * hour, "notes": "card payment never confirmed"},
            {"user_id": users[1], "amount": -3, "kind": "usage", "status": "pending",
             "created_at": now - 30 * hour, "notes": "job never reported back"},
            {"user_id": users[1], "amount": -2, "kind": "usage", "status": "completed",
             "created_at": now - hour, "notes": "export"},
        ],
    )  # fmt: skip


def _posts(conn: Connection, now: datetime) -> None:
    minute = timedelta(minutes=1)
    conn.execute(
        insert(tables.post_schedules),
        [
            {
                "platform": "x",
                "body": "Hello from beatkeeper",
                "cron": None,
                "time_zone": "UTC",
                "next_run_at": now - minute,
            },
            {
                "platform": "x",
                "body": "x" * 300,
                "cron": None,
                "time_zone": "UTC",
                "next_run_at": now - minute,
            },  # too long: fails for good
            {
                "platform": "mastodon",
                "body": "Weekly digest",
                "cron": "0 9 * * MON",
                "time_zone": "Europe/London",
                "next_run_at": now + 60 * minute,
            },
        ],
    )
