"""``capture_metrics``: engagement snapshots of published posts at fixed stages.

A post is measured ``STAGES`` after it was published (1 hour, 24 hours, 7 days). Every
run (every 15 minutes) looks for published jobs whose stage has come and which have no
snapshot for it, and only among posts published within the last ``STAGES['7d']`` plus
``lookback_days``, so the query stays bounded as history grows. One snapshot per job and
stage (the primary key): an overlapping run's duplicate is dropped.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import shared_task
from sqlalchemy import and_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert

from beatkeeper_examples import db, tables
from beatkeeper_examples.clock import instant
from beatkeeper_examples.publishing import client

__all__ = ["STAGES", "capture_metrics"]

STAGES = {"1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7)}
log = logging.getLogger(__name__)
j, m = tables.publish_jobs, tables.metrics_snapshots


@shared_task(name="examples.publishing.capture_metrics")  # type: ignore[untyped-decorator]
def capture_metrics(
    batch_size: int = 200,
    lookback_days: int = 2,
    platform: str | None = None,
    now: str | None = None,
) -> dict[str, int]:
    """Snapshot the metrics of every published post whose next stage has come (only those
    on ``platform`` when given: one Schedule per platform shares that API's rateLimit)."""
    at = instant(now)
    oldest = at - STAGES["7d"] - timedelta(days=lookback_days)
    captured = 0
    with db.connect().begin() as conn:
        for stage, after in STAGES.items():
            due = conn.execute(
                select(j.c.id, j.c.external_id)
                .outerjoin(m, and_(m.c.job_id == j.c.id, m.c.stage == stage))
                .where(j.c.status == "succeeded", m.c.job_id.is_(None))
                .where(j.c.finished_at <= at - after, j.c.finished_at > oldest)
                .where(j.c.platform == platform if platform else j.c.platform.is_not(None))
                .order_by(j.c.id)
                .limit(batch_size)
            ).all()
            rows = [
                {"job_id": job_id, "stage": stage, "captured_at": at,
                 "metrics": client.current().metrics(external_id, stage)}
                for job_id, external_id in due
            ]  # fmt: skip
            if rows:
                conn.execute(pg_insert(m).on_conflict_do_nothing(), rows)
            captured += len(rows)
    log.info("post metrics captured: %d snapshots", captured)
    return {"captured": captured}
