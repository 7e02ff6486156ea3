"""Chore instances generated ahead over a horizon, with rotation and end guards.

Each run walks the chores in batches (one transaction per batch, rows locked ``FOR UPDATE
SKIP LOCKED`` so an overlapping run takes other chores) and, per chore, expands its RRULE
(read in the chore's time zone from ``starts_on`` at ``due_time``) from the day after
``generated_through`` (or today) to the end of the horizon. The chore row records how far
it was materialised and how many occurrences exist, so:

* a re-run, or a longer horizon, creates only the new days (and the unique
  ``(chore_id, due_date)`` refuses a duplicate whatever happens);
* the assignee rotates through ``assignees`` by occurrence number, which the clean-up
  deleting old instances cannot disturb;
* a chore whose RRULE or time zone cannot be read is skipped with a warning naming it
  (counted ``invalid``), and the other chores are still generated;
* the end guards hold: ``ends_on``, ``max_occurrences``, the RRULE's own ``UNTIL`` and
  ``COUNT``, ``skip_months`` and ``skip_dates``. As RFC 5545 says, ``BYMONTHDAY=31``
  simply has no instance in a shorter month.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from celery import shared_task
from dateutil.rrule import rrulestr
from sqlalchemy import Connection, Row, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from beatkeeper_examples import db, tables
from beatkeeper_examples.clock import instant

__all__ = ["generate_instances", "occurrences"]

log = logging.getLogger(__name__)
c = tables.chores


@shared_task(name="examples.chores.generate_instances")  # type: ignore[untyped-decorator]
def generate_instances(
    horizon_days: int = 21, batch_size: int = 200, now: str | None = None
) -> dict[str, int]:
    """Create the missing instances due in the ``horizon_days`` days starting today."""
    at = instant(now)
    counts = {"chores": 0, "created": 0, "ended": 0, "invalid": 0}
    after_id = 0
    while True:
        with db.connect().begin() as conn:
            batch = conn.execute(
                select(c)
                .where(c.c.id > after_id)
                .order_by(c.c.id)
                .limit(batch_size)
                .with_for_update(skip_locked=True)
            ).all()
            for chore in batch:
                counts["chores"] += 1
                try:
                    made = _generate(conn, chore, at=at, horizon_days=horizon_days)
                except (ValueError, KeyError) as error:  # its RRULE or time zone is unusable
                    counts["invalid"] += 1
                    log.warning("chore %s skipped: %s", chore.id, error)
                    continue
                counts["created"] += max(made, 0)
                counts["ended"] += made < 0
        if len(batch) < batch_size:
            break
        after_id = batch[-1].id
    log.info("chore instances: %(created)d created for %(chores)d chores", counts)
    if counts["invalid"]:
        log.warning("%(invalid)d chores have an unusable rule or time zone", counts)
    return counts


def _generate(conn: Connection, chore: Row[Any], *, at: datetime, horizon_days: int) -> int:
    """Insert the chore's next instances; their number, or -1 when the chore has ended."""
    zone = ZoneInfo(chore.time_zone)
    today = at.astimezone(zone).date()
    first = max(today, (chore.generated_through or date.min) + timedelta(days=1))
    last = today + timedelta(days=horizon_days - 1)  # today counts as the first day
    left = None if chore.max_occurrences is None else chore.max_occurrences - chore.generated_count
    due = occurrences(chore, first=first, last=last)[: left if left is not None else None]
    if not due and _ended(chore, last=last, left=left):
        return -1
    rows = [_instance(chore, local, chore.generated_count + i) for i, local in enumerate(due, 1)]
    if rows:
        statement = pg_insert(tables.chore_instances).on_conflict_do_nothing(
            index_elements=["chore_id", "due_date"]
        )
        conn.execute(statement, rows)
    conn.execute(
        update(c)
        .where(c.c.id == chore.id)
        .values(
            generated_through=max(last, chore.generated_through or last),
            generated_count=chore.generated_count + len(rows),
        )
    )
    return len(rows)


def occurrences(chore: Row[Any], *, first: date, last: date) -> list[datetime]:
    """The chore's local due times from ``first`` to ``last`` (inclusive), guards applied."""
    if chore.ends_on is not None:
        last = min(last, chore.ends_on)
    if last < first:
        return []
    zone = ZoneInfo(chore.time_zone)
    rule = rrulestr(chore.rrule, dtstart=datetime.combine(chore.starts_on, chore.due_time))
    window = rule.between(
        datetime.combine(first, time.min), datetime.combine(last, time.max), inc=True
    )
    months, dates = set(chore.skip_months or ()), set(chore.skip_dates or ())
    return [
        local.replace(tzinfo=zone)
        for local in window
        if local.month not in months and local.date() not in dates
    ]


def _ended(chore: Row[Any], *, last: date, left: int | None) -> bool:
    return (left is not None and left <= 0) or (chore.ends_on is not None and chore.ends_on < last)


def _instance(chore: Row[Any], local: datetime, sequence: int) -> dict[str, Any]:
    assignees = chore.assignees or []
    return {
        "chore_id": chore.id,
        "sequence": sequence,
        "due_date": local.date(),
        # A wall-clock time in a spring-forward gap keeps the offset from before the gap.
        "due_at": local.astimezone(UTC),
        "assignee_id": assignees[(sequence - 1) % len(assignees)] if assignees else None,
    }
