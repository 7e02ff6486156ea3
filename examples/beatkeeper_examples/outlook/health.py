"""Health of the daily outlook pipeline, every 4 hours: one line a person can act on.

It checks that the database answers, how many users are active, whether tomorrow's
outlooks exist once the 05:00 UTC pre-generation should have made them, and how many
notifications wait undelivered for over an hour. A problem makes the status ``degraded``
and is logged as a warning; the task still succeeds, because the run's job is to report,
and a failed run would be retried to no purpose.
"""

from __future__ import annotations

import logging
from datetime import time, timedelta
from typing import Any

from celery import shared_task
from sqlalchemy import func, select, text

from beatkeeper_examples import db, tables
from beatkeeper_examples.clock import instant
from beatkeeper_examples.outlook.generation import ACTIVE_WITHIN

__all__ = ["health_check"]

log = logging.getLogger(__name__)
GENERATED_BY = time(6, 0)  # UTC: the 05:00 pre-generation has had an hour


@shared_task(name="examples.outlook.health_check")  # type: ignore[untyped-decorator]
def health_check(now: str | None = None) -> dict[str, Any]:
    """Report ``healthy`` or ``degraded`` with the numbers behind it."""
    at = instant(now)
    u, o, n = tables.users, tables.daily_outlooks, tables.notifications
    tomorrow = at.date() + timedelta(days=1)
    with db.connect().connect() as conn:
        conn.execute(text("SELECT 1"))
        active = conn.execute(
            select(func.count()).where(u.c.last_active_at >= at - ACTIVE_WITHIN)
        ).scalar_one()
        ready = conn.execute(select(func.count()).where(o.c.outlook_date == tomorrow)).scalar_one()
        stuck = conn.execute(
            select(func.count()).where(
                n.c.dispatched_at.is_(None), n.c.created_at < at - timedelta(hours=1)
            )
        ).scalar_one()
    problems = []
    if active and not ready and at.time() >= GENERATED_BY:
        problems.append(f"no outlooks generated for {tomorrow}")
    if stuck:
        problems.append(f"{stuck} notifications undelivered for over an hour")
    status = "degraded" if problems else "healthy"
    report = {
        "status": status,
        "database": "ok",
        "active_users": active,
        "outlooks_tomorrow": ready,
        "undelivered_notifications": stuck,
        "problems": problems,
    }
    (log.warning if problems else log.info)("daily outlook health: %s %s", status, problems)
    return report
