"""``publish_post``: one publish job, one attempt, one state transition at a time.

A job moves ``planned → enqueued → running → succeeded | failed | retrying | dead``;
``retrying → enqueued`` again when its next attempt is due (``scheduler``). Every
transition is one conditional UPDATE (``… WHERE status = <the state it leaves>``), so a
duplicate message, a redelivery or a second worker finds the job already moved on and
does nothing: a job is published by one attempt at a time.

Per-platform limits (``limits``: posts per window, e.g. ``{"x": {"posts": 17,
"window_seconds": 86400}}``) are checked in the claiming transaction under a per-platform
advisory lock, counting the platform's jobs published within the window and those
running now; a job over the limit goes back to ``retrying`` with its next attempt when the
window frees a slot, without using up an attempt.

A transient failure retries with exponential backoff and full jitter (``backoff_seconds``
doubling per attempt up to ``max_backoff_seconds``) until ``max_attempts``, then the job is
``dead`` and ``dead_letters`` takes it from there. A permanent failure is ``failed`` at
once. Retries wait in PostgreSQL (``next_attempt_at``), never as countdown messages in
Redis. The task does not raise for a failed post: the job's state is the outcome.
"""

from __future__ import annotations

import logging
import random
from datetime import datetime, timedelta
from typing import Any

from celery import shared_task
from sqlalchemy import Connection, func, or_, select, text, update

from beatkeeper_examples import db, tables
from beatkeeper_examples.clock import instant
from beatkeeper_examples.publishing import client

__all__ = ["DEFAULT_LIMITS", "backoff", "publish_post"]

#: The platforms' published posting limits when written; set your own tier's in kwargs.
DEFAULT_LIMITS = {
    "x": {"posts": 17, "window_seconds": 86400},
    "mastodon": {"posts": 300, "window_seconds": 10800},
}
log = logging.getLogger(__name__)
j = tables.publish_jobs


@shared_task(  # type: ignore[untyped-decorator]
    name="examples.publishing.publish_post", time_limit=60, soft_time_limit=50, acks_late=True
)
def publish_post(
    job_id: int,
    *,
    max_attempts: int = 5,
    backoff_seconds: float = 30,
    max_backoff_seconds: float = 3600,
    limits: dict[str, dict[str, int]] | None = None,
    now: str | None = None,
) -> dict[str, Any]:
    """Make one attempt at publishing job ``job_id``; return where it ended."""
    at = instant(now)
    with db.connect().begin() as conn:
        job = _claim(conn, job_id, at, limits or DEFAULT_LIMITS)
    if job is None or job["status"] != "running":
        return {"job": job_id, "status": job["status"] if job else "not enqueued"}
    try:
        external_id = client.current().publish(job["platform"], job["body"])
    except client.TransientPublishError as error:
        if job["attempt"] >= max_attempts:
            return _finish(job_id, at, status="dead", last_error=str(error))
        delay = backoff(job["attempt"], backoff_seconds, max_backoff_seconds)
        return _finish(job_id, at, status="retrying", last_error=str(error),
                       next_attempt_at=at + delay, finished_at=None)  # fmt: skip
    except client.PermanentPublishError as error:
        return _finish(job_id, at, status="failed", last_error=str(error))
    return _finish(job_id, at, status="succeeded", external_id=external_id, last_error=None)


def backoff(attempt: int, base: float, cap: float) -> timedelta:
    """Full jitter: a random wait up to ``base * 2**(attempt-1)``, at most ``cap``."""
    return timedelta(seconds=random.uniform(0, min(cap, base * 2 ** (attempt - 1))))  # noqa: S311


def _claim(
    conn: Connection, job_id: int, at: datetime, limits: dict[str, dict[str, int]]
) -> dict[str, Any] | None:
    job = conn.execute(
        select(j.c.platform).where(j.c.id == job_id, j.c.status == "enqueued")
    ).first()
    if job is None:
        return None
    limit = limits.get(job.platform)
    if limit is not None:
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
                     {"key": f"publish:{job.platform}"})  # fmt: skip
        free_at = _slot_free_at(conn, job.platform, at, limit)
        if free_at is not None:
            conn.execute(
                update(j)
                .where(j.c.id == job_id, j.c.status == "enqueued")
                .values(status="retrying", next_attempt_at=free_at)
            )
            log.info("job %s deferred to %s: %s limit reached", job_id, free_at, job.platform)
            return {"status": "deferred"}
    row = conn.execute(
        update(j)
        .where(j.c.id == job_id, j.c.status == "enqueued")
        .values(status="running", attempt=j.c.attempt + 1, started_at=at)
        .returning(j.c.platform, j.c.body, j.c.attempt)
    ).first()
    return None if row is None else {"status": "running", **row._asdict()}


def _slot_free_at(
    conn: Connection, platform: str, at: datetime, limit: dict[str, int]
) -> datetime | None:
    """None if the platform has a free slot now, else when the oldest one frees."""
    window = timedelta(seconds=limit["window_seconds"])
    counted = (j.c.platform == platform) & or_(
        (j.c.status == "succeeded") & (j.c.finished_at > at - window),
        j.c.status == "running",
    )
    used, oldest = conn.execute(
        select(func.count(), func.min(j.c.finished_at)).where(counted)
    ).one()
    if used < limit["posts"]:
        return None
    return (oldest or at) + window


def _finish(job_id: int, at: datetime, *, status: str, **values: Any) -> dict[str, Any]:
    values.setdefault("finished_at", at)
    with db.connect().begin() as conn:
        conn.execute(
            update(j)
            .where(j.c.id == job_id, j.c.status == "running")
            .values(status=status, **values)
        )
    (log.warning if status in ("dead", "failed") else log.info)(
        "publish job %s %s%s",
        job_id,
        status,
        f": {values['last_error']}" * bool(values.get("last_error")),
    )
    return {"job": job_id, "status": status}
