"""Credits: expired holds are released every three hours; every user is allocated credits
once a month.

A hold reserves part of a user's credits until it expires; releasing it gives the amount
back, in the same transaction that stamps ``released_at`` (so a hold is released once).
The monthly allocation is idempotent by month: ``credit_allocations`` has one row per user
and month, and only the rows this run inserted add credits. With ``missedRuns: RunAll`` a
month missed during downtime is still allocated, as of the month its run was planned for.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date

from celery import shared_task
from sqlalchemy import Connection, bindparam, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from beatkeeper_examples import db
from beatkeeper_examples.clock import instant, planned_instant

__all__ = ["allocate_monthly", "release_expired_holds"]


@shared_task(name="examples.credits.release_expired_holds")  # type: ignore[untyped-decorator]
def release_expired_holds(now: str | None = None) -> dict[str, int]:
    """Release every unreleased hold that expired at or before now."""
    at = instant(now)
    holds = db.credit_holds
    with db.connect().begin() as conn:
        released = conn.execute(
            update(holds)
            .where(holds.c.released_at.is_(None), holds.c.expires_at <= at)
            .values(released_at=at)
            .returning(holds.c.user_id, holds.c.amount)
        ).all()
        per_user = Counter[int]()
        for user_id, amount in released:
            per_user[user_id] += amount
        if per_user:
            conn.execute(
                update(db.users)
                .where(db.users.c.id == bindparam("uid"))
                .values(credits=db.users.c.credits + bindparam("back")),
                [{"uid": uid, "back": back} for uid, back in per_user.items()],
            )
    return {"released": len(released), "credits": sum(per_user.values()), "users": len(per_user)}


@shared_task(name="examples.credits.allocate_monthly")  # type: ignore[untyped-decorator]
def allocate_monthly(credits: int = 100, now: str | None = None) -> dict[str, int | str]:
    """Give every user ``credits`` for now's month (UTC), unless they already got them."""
    month = planned_instant(now).astimezone(UTC).date().replace(day=1)
    with db.connect().begin() as conn:
        allocated = _allocate(conn, month, credits)
        users = conn.execute(select(func.count()).select_from(db.users)).scalar_one()
    return {"month": month.strftime("%Y-%m"), "allocated": allocated, "already": users - allocated}


def _allocate(conn: Connection, month: date, credits: int) -> int:
    rows = select(db.users.c.id, bindparam("month", month), bindparam("amount", credits))
    inserted = (
        conn.execute(
            pg_insert(db.credit_allocations)
            .from_select(["user_id", "month", "amount"], rows)
            .on_conflict_do_nothing(index_elements=["user_id", "month"])
            .returning(db.credit_allocations.c.user_id)
        )
        .scalars()
        .all()
    )
    if inserted:
        conn.execute(
            update(db.users)
            .where(db.users.c.id.in_(inserted))
            .values(credits=db.users.c.credits + credits)
        )
    return len(inserted)
