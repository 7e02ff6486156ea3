"""Dead letters: publish jobs out of attempts are recorded, their owners told, and they
can be replayed.

``process_dead_letters`` (every 5 minutes) writes one ``dead_letters`` row per dead job
(its primary key is the job: a repeated run records nothing twice) and, in the same
transaction, a notification to the post's owner through the outbox in ``dispatch``.
``replay_dead_letter`` gives a dead job a fresh set of attempts, due now; run it by hand:
``celery -A beatkeeper_worker call examples.publishing.replay_dead_letter --args '[42]'
--queue publish``.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from sqlalchemy import insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from beatkeeper_examples import db, dispatch, tables
from beatkeeper_examples.clock import instant

__all__ = ["process_dead_letters", "replay_dead_letter"]

log = logging.getLogger(__name__)
j, d, p = tables.publish_jobs, tables.dead_letters, tables.post_schedules


@shared_task(name="examples.publishing.process_dead_letters")  # type: ignore[untyped-decorator]
def process_dead_letters(batch_size: int = 200, now: str | None = None) -> dict[str, int]:
    """Record the dead jobs not yet recorded and notify their owners."""
    at = instant(now)
    engine = db.connect()
    with engine.begin() as conn:
        dead = conn.execute(
            select(j.c.id, j.c.platform, j.c.last_error, p.c.owner_id)
            .join(p, p.c.id == j.c.schedule_id)
            .outerjoin(d, d.c.job_id == j.c.id)
            .where(j.c.status == "dead", d.c.job_id.is_(None))
            .order_by(j.c.id)
            .limit(batch_size)
        ).all()
        recorded = (
            conn.execute(
                pg_insert(d).on_conflict_do_nothing().returning(d.c.job_id),
                [
                    {"job_id": row.id, "reason": row.last_error or "", "created_at": at}
                    for row in dead
                ],
            )
            .scalars()
            .all()
            if dead
            else []
        )
        owners = [row for row in dead if row.id in set(recorded) and row.owner_id is not None]
        for row in owners:
            conn.execute(
                insert(tables.notifications).values(
                    user_id=row.owner_id,
                    kind="post_dead",
                    link=f"publish_job:{row.id}",
                    title=f"A {row.platform} post could not be published",
                    body=f"Every attempt failed; the last error: {row.last_error}",
                    created_at=at,
                )
            )
    delivery = dispatch.deliver_pending(engine, now=at)
    log.info("dead letters recorded: %d", len(recorded))
    return {"recorded": len(recorded), "owners_notified": len(owners), **delivery}


@shared_task(name="examples.publishing.replay_dead_letter")  # type: ignore[untyped-decorator]
def replay_dead_letter(job_id: int, now: str | None = None) -> dict[str, Any]:
    """Give dead job ``job_id`` a fresh set of attempts, due now."""
    at = instant(now)
    with db.connect().begin() as conn:
        replayed = conn.execute(
            update(j)
            .where(j.c.id == job_id, j.c.status == "dead")
            .values(status="planned", attempt=0, next_attempt_at=at, finished_at=None)
        ).rowcount
        conn.execute(update(d).where(d.c.job_id == job_id).values(replayed_at=at))
    if not replayed:
        return {"job": job_id, "replayed": False, "reason": "not dead"}
    log.info("dead publish job %s replayed", job_id)
    return {"job": job_id, "replayed": True}
