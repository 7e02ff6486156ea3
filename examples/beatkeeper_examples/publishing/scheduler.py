"""``scheduler_tick``: every minute, turn due post schedules into publish jobs and send
the jobs whose attempt is due to the publish queue.

Planning claims due post schedules (``FOR UPDATE SKIP LOCKED``: ticks that overlap share
the work), inserts one job per schedule and planned instant (the unique
``publish_jobs_dedupe`` key makes a repeated tick plan nothing twice) and advances the
schedule: a recurring post (``cron`` in its ``time_zone``) to its next occurrence after
now, so downtime never floods a feed with catch-up posts; a one-off post to none. A post
schedule whose cron or zone cannot be read is disabled with a warning naming it.

Sending claims the jobs due for an attempt (``planned``, or ``retrying`` whose
``next_attempt_at`` has come), marks them ``enqueued``, commits, and only then sends one
``publish_post`` message each. A crash between the commit and the send leaves jobs
``enqueued`` with no message: the tick sends such a job again once it has waited
``redeliver_after_minutes``, and ``publish_post``'s conditional claim makes the extra
message harmless if the first one did arrive. A job ``running`` for longer than
``stale_after_minutes`` (its worker died) goes back to ``retrying``.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from celery import shared_task
from sqlalchemy import Connection, and_, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from beatkeeper.recurrence import CronTrigger
from beatkeeper_examples import db, tables
from beatkeeper_examples.clock import instant
from beatkeeper_examples.publishing import publish

__all__ = ["scheduler_tick"]

log = logging.getLogger(__name__)
p, j = tables.post_schedules, tables.publish_jobs


@shared_task(name="examples.publishing.scheduler_tick")  # type: ignore[untyped-decorator]
def scheduler_tick(
    *,
    batch_size: int = 200,
    publish_queue: str = "publish",
    publish_options: dict[str, Any] | None = None,
    redeliver_after_minutes: int = 10,
    stale_after_minutes: int = 5,
    now: str | None = None,
) -> dict[str, int]:
    """Plan the due posts, then send the jobs due for an attempt."""
    at = instant(now)
    engine = db.connect()
    with engine.begin() as conn:
        planned = _plan(conn, at, batch_size)
        stale = _requeue_stale(conn, at - timedelta(minutes=stale_after_minutes))
        jobs = _claim_due_jobs(
            conn, at, batch_size, at - timedelta(minutes=redeliver_after_minutes)
        )
    for job_id in jobs:  # after the commit: a message never names an uncommitted job
        publish.publish_post.apply_async(
            args=[job_id], kwargs=publish_options or {}, queue=publish_queue
        )
    counts = {"planned": planned, "sent": len(jobs), "stale": stale}
    log.info("publishing tick: %(planned)d planned, %(sent)d sent, %(stale)d stale", counts)
    return counts


def _plan(conn: Connection, at: datetime, limit: int) -> int:
    due = conn.execute(
        select(p.c.id, p.c.platform, p.c.body, p.c.cron, p.c.time_zone, p.c.next_run_at)
        .where(p.c.enabled, p.c.next_run_at <= at)
        .order_by(p.c.next_run_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    if not due:
        return 0
    rows = [
        {"schedule_id": s.id, "planned_at": s.next_run_at, "platform": s.platform,
         "body": s.body, "next_attempt_at": s.next_run_at}
        for s in due
    ]  # fmt: skip
    inserted = conn.execute(
        pg_insert(j).on_conflict_do_nothing(constraint="publish_jobs_dedupe").returning(j.c.id),
        rows,
    ).all()
    for s in due:
        values: dict[str, Any] = {"next_run_at": _following(s, at), "last_run_at": at}
        if s.cron and values["next_run_at"] is None:
            values["enabled"] = False  # its cron or zone is unusable: stop, say so once
        conn.execute(update(p).where(p.c.id == s.id).values(**values))
    return len(inserted)


def _following(schedule: Any, at: datetime) -> datetime | None:
    """The recurring post's next occurrence after ``at``; None for a one-off or a bad one."""
    if not schedule.cron:
        return None
    try:
        return CronTrigger(schedule.cron, ZoneInfo(schedule.time_zone)).next_after(at)
    except (ValueError, KeyError) as error:
        log.warning("post schedule %s disabled: %s", schedule.id, error)
        return None


def _requeue_stale(conn: Connection, started_before: datetime) -> int:
    return conn.execute(
        update(j)
        .where(j.c.status == "running", j.c.started_at < started_before)
        .values(status="retrying", last_error="the worker running it was lost")
    ).rowcount


def _claim_due_jobs(
    conn: Connection, at: datetime, limit: int, unsent_before: datetime
) -> list[int]:
    waiting = or_(
        and_(j.c.status.in_(("planned", "retrying")), j.c.next_attempt_at <= at),
        and_(j.c.status == "enqueued", j.c.enqueued_at < unsent_before),
    )
    due = (
        select(j.c.id)
        .where(waiting)
        .order_by(j.c.next_attempt_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list(
        conn.execute(
            update(j)
            .where(j.c.id.in_(due.scalar_subquery()))
            .values(status="enqueued", enqueued_at=at)
            .returning(j.c.id)
        ).scalars()
    )
