"""Pre-generation of daily outlooks for every active user (active within 30 days).

``generate_daily_outlooks`` runs at 05:00 UTC for ``target_date`` (an ISO date; by default
the day after the run's planned instant, so a retried or caught-up run still generates
for the day it was meant for). It walks the active users in batches, one transaction per
batch, and writes one outlook per user and date: an existing outlook is skipped (the
unique ``(user_id, outlook_date)``) unless ``force_regenerate`` rewrites it, so a repeated
run generates nothing twice. A user whose content cannot be generated is counted failed
and named in ``errors``; the others still get theirs. A failure of the database itself
raises, and the Schedule's retry policy runs the task again (3 retries, 5 minutes apart
and growing).

The content is a stand-in for a real content service: a template picked per user and
date by the templates' weights (which the weekly optimisation adjusts), filled in.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any

from celery import shared_task
from sqlalchemy import Connection, Row, select
from sqlalchemy.dialects.postgresql import insert as pg_insert

from beatkeeper_examples import db, tables
from beatkeeper_examples.clock import calendar_date, planned_instant

__all__ = ["ACTIVE_WITHIN", "content_for", "generate_daily_outlooks", "upsert_outlooks"]

ACTIVE_WITHIN = timedelta(days=30)
MAX_ERRORS = 10
log = logging.getLogger(__name__)
u, o = tables.users, tables.daily_outlooks


@shared_task(name="examples.outlook.generate_daily_outlooks")  # type: ignore[untyped-decorator]
def generate_daily_outlooks(
    target_date: str | None = None,
    force_regenerate: bool = False,
    batch_size: int = 500,
    now: str | None = None,
) -> dict[str, Any]:
    """Generate ``target_date``'s outlook (default: tomorrow) for every active user."""
    at = planned_instant(now)
    day = (
        calendar_date("target_date", target_date) if target_date else at.date() + timedelta(days=1)
    )
    counts = {"total_users": 0, "generated_count": 0, "skipped_count": 0, "failed_count": 0}
    errors: list[str] = []
    after = 0
    while True:
        with db.connect().begin() as conn:
            users = conn.execute(
                select(u.c.id, u.c.name)
                .where(u.c.id > after, u.c.last_active_at >= at - ACTIVE_WITHIN)
                .order_by(u.c.id)
                .limit(batch_size)
            ).all()
            rows = _contents(conn, users, day, at, errors)
            written = upsert_outlooks(conn, rows, force=force_regenerate)
        counts["total_users"] += len(users)
        counts["generated_count"] += written
        counts["failed_count"] += len(users) - len(rows)
        counts["skipped_count"] += len(rows) - written
        if len(users) < batch_size:
            break
        after = users[-1].id
    log.info("outlooks for %s: %s", day, counts)
    return {"success": True, "target_date": day.isoformat(), **counts, "errors": errors}


def _contents(
    conn: Connection, users: Sequence[Any], day: date, at: datetime, errors: list[str]
) -> list[dict[str, Any]]:
    templates = conn.execute(select(tables.content_templates)).all()
    rows = []
    for user in users:
        try:
            template, content = content_for(templates, user_id=user.id, name=user.name, day=day)
        except (KeyError, ValueError, IndexError) as error:
            if len(errors) < MAX_ERRORS:
                errors.append(f"user {user.id}: {error!r}")
            continue
        rows.append(
            {
                "user_id": user.id,
                "outlook_date": day,
                "template": template,
                "content": content,
                "generated_at": at,
            }
        )
    return rows


def content_for(
    templates: Sequence[Row[Any]], *, user_id: int, name: str, day: date
) -> tuple[str, str]:
    """(template name, content): a template chosen by weight, stable per user and date."""
    if not templates:
        raise ValueError("no content templates")
    digest = hashlib.sha256(f"{user_id}:{day}".encode()).digest()
    point = int.from_bytes(digest[:8], "big") / 2**64 * sum(t.weight for t in templates)
    for template in sorted(templates, key=lambda t: t.name):
        point -= template.weight
        if point < 0:
            break
    return template.name, template.body.format(name=name, date=day)


def upsert_outlooks(conn: Connection, rows: list[dict[str, Any]], *, force: bool) -> int:
    """Insert the outlooks (replacing existing ones when ``force``); how many were written."""
    if not rows:
        return 0
    statement = pg_insert(o)
    if force:
        statement = statement.on_conflict_do_update(
            index_elements=["user_id", "outlook_date"],
            set_={k: statement.excluded[k] for k in ("template", "content", "generated_at")},
        )
    else:
        statement = statement.on_conflict_do_nothing(index_elements=["user_id", "outlook_date"])
    return len(conn.execute(statement.returning(o.c.id), rows).all())
