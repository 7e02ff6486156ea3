"""Streaks (nightly) and leaderboards (hourly), recomputed from completed instances.

Both are rebuilt from the source rows rather than incremented, so a repeated or
overlapping run writes the same numbers (idempotent), and both read a bounded window:

* ``recompute_streaks`` looks at the last ``window_days`` days of completions (days in
  each user's own time zone). The current streak counts back from today, or from
  yesterday while today is still open; the longest streak keeps the larger of what it
  had and what the window shows, so it survives the window moving on. Totals are one
  aggregate per user over all completions. Rows are upserted (``ON CONFLICT DO UPDATE``
  locks each row, so two runs cannot interleave their writes).
* ``rebuild_leaderboards`` replaces, per household, the standings of the current and the
  previous day, ISO week, month, and all time (UTC periods) in one transaction, so a
  reader sees the old board or the new one. The previous period is rebuilt too: a
  completion recorded late still counts, and the period that just ended gets its final
  standings.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from celery import shared_task
from sqlalchemy import Connection, and_, delete, func, literal, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert

from beatkeeper_examples import db, tables
from beatkeeper_examples.clock import instant

__all__ = ["PERIODS", "period_start", "rebuild_leaderboards", "recompute_streaks", "streaks"]

PERIODS = ("daily", "weekly", "monthly", "all_time")
ALL_TIME = date(1970, 1, 1)
log = logging.getLogger(__name__)
i, u, c = tables.chore_instances, tables.users, tables.chores


@shared_task(name="examples.chores.recompute_streaks")  # type: ignore[untyped-decorator]
def recompute_streaks(window_days: int = 60, now: str | None = None) -> dict[str, int]:
    """Recompute every user's streaks and totals from their completions."""
    at = instant(now)
    with db.connect().begin() as conn:
        days = _completion_days(conn, since=at - timedelta(days=window_days))
        totals = conn.execute(
            select(i.c.completed_by, func.count(), func.coalesce(func.sum(c.c.points), 0))
            .join(c, c.c.id == i.c.chore_id)
            .where(i.c.status == "completed", i.c.completed_by.is_not(None))
            .group_by(i.c.completed_by)
        ).all()
        zones = dict(conn.execute(select(u.c.id, u.c.time_zone)).all())
        rows = []
        for user_id, completed, points in totals:
            zone = _zone(zones[user_id])
            if zone is None:
                continue
            today = at.astimezone(zone).date()
            current, longest = streaks(days.get(user_id, set()), today=today)
            rows.append(
                {
                    "user_id": user_id,
                    "current_streak": current,
                    "longest_streak": longest,
                    "total_completed": completed,
                    "total_points": points,
                    "updated_at": at,
                }
            )
        _upsert_scores(conn, rows)
    log.info("streaks recomputed for %d users", len(rows))
    return {"users": len(rows)}


def streaks(days: set[date], *, today: date) -> tuple[int, int]:
    """(current, longest) runs of consecutive days in ``days``."""
    current, day = 0, today if today in days else today - timedelta(days=1)
    while day in days:
        current, day = current + 1, day - timedelta(days=1)
    longest = run = 0
    for day in sorted(days):
        run = run + 1 if day - timedelta(days=1) in days else 1
        longest = max(longest, run)
    return current, longest


def _completion_days(conn: Connection, *, since: datetime) -> dict[int, set[date]]:
    """Each user's local completion days since ``since``; users in unknown zones left out."""
    rows = conn.execute(
        select(i.c.completed_by, i.c.completed_at, u.c.time_zone)
        .join(u, u.c.id == i.c.completed_by)
        .where(i.c.status == "completed", i.c.completed_at >= since)
    )
    days: dict[int, set[date]] = defaultdict(set)
    for user_id, completed_at, zone in rows:
        if (local := _zone(zone)) is not None:
            days[user_id].add(completed_at.astimezone(local).date())
    return days


def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ValueError, KeyError):
        log.warning("unknown time zone %r: its users' streaks are left as they were", name)
        return None


def _upsert_scores(conn: Connection, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    s = tables.user_scores
    statement = pg_insert(s)
    conn.execute(
        statement.on_conflict_do_update(
            index_elements=[s.c.user_id],
            set_={
                "current_streak": statement.excluded.current_streak,
                "longest_streak": func.greatest(
                    s.c.longest_streak, statement.excluded.longest_streak
                ),
                "total_completed": statement.excluded.total_completed,
                "total_points": statement.excluded.total_points,
                "updated_at": statement.excluded.updated_at,
            },
        ),
        rows,
    )


@shared_task(name="examples.chores.rebuild_leaderboards")  # type: ignore[untyped-decorator]
def rebuild_leaderboards(now: str | None = None) -> dict[str, int]:
    """Rebuild the current and previous standings of every period, per household."""
    at = instant(now)
    rows = 0
    with db.connect().begin() as conn:
        # One rebuild at a time: a second run waits, then rebuilds the same numbers.
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('chores-leaderboards'))"))
        for period in PERIODS:
            for start in {period_start(period, at, previous=p) for p in (False, True)}:
                rows += _rebuild(conn, period, start, _period_end(period, start), at)
    log.info("leaderboards rebuilt: %d standings", rows)
    return {"standings": rows}


def period_start(period: str, at: datetime, *, previous: bool = False) -> date:
    """The first day (UTC) of ``period`` containing ``at``, or of the one before it."""
    day = at.astimezone(UTC).date()
    if period == "all_time":
        return ALL_TIME
    if period == "daily":
        return day - timedelta(days=previous)
    if period == "weekly":
        return day - timedelta(days=day.weekday() + 7 * previous)
    first = day.replace(day=1)
    return (first - timedelta(days=1)).replace(day=1) if previous else first


def _period_end(period: str, start: date) -> date:
    if period == "all_time":
        return date.max
    if period == "daily":
        return start + timedelta(days=1)
    if period == "weekly":
        return start + timedelta(days=7)
    return (start + timedelta(days=32)).replace(day=1)


def _rebuild(conn: Connection, period: str, start: date, end: date, at: datetime) -> int:
    board = tables.leaderboards
    conn.execute(delete(board).where(board.c.period == period, board.c.period_start == start))
    day = func.date(func.timezone("UTC", i.c.completed_at))
    points = func.sum(c.c.points)
    ranked = (
        select(
            u.c.household,
            literal(period),
            literal(start),
            u.c.id,
            points,
            func.count(),
            func.rank().over(partition_by=u.c.household, order_by=points.desc()),
            literal(at),
        )
        .join(i, i.c.completed_by == u.c.id)
        .join(c, c.c.id == i.c.chore_id)
        .where(
            and_(i.c.status == "completed", u.c.household.is_not(None)),
            day >= start,
            day < end,
        )
        .group_by(u.c.household, u.c.id)
    )
    columns = ["household", "period", "period_start", "user_id", "points", "completed", "rank",
               "computed_at"]  # fmt: skip
    inserted = conn.execute(pg_insert(board).from_select(columns, ranked))
    return inserted.rowcount
