"""Credits: holds released, monthly allocations, stale pending transactions settled, usage
synced to analytics.

Every balance change is a row in ``credit_transactions`` (the ledger) written in the same
transaction as the balance update, so the two never disagree after a crash.

* ``release_expired_holds`` (every 3 hours): an expired, unreleased hold gives its amount
  back; ``released_at`` is stamped by the same conditional UPDATE that selects it, so a
  hold is released once however runs overlap.
* ``allocate_monthly`` (00:00 UTC on the 1st): each active subscription gets its tier's
  credits for the month of the run's *planned* instant (a month caught up after downtime
  counts for its own month). Never twice: the ledger's unique ``idempotency_key``
  (``allocation:<subscription>:<YYYY-MM>``) admits one allocation per subscription and
  month, and only the rows this run inserted move balances. The database, not Redis, is
  the guard: it commits together with the balance.
* ``settle_pending`` (every 15 minutes): a transaction pending for over 24 hours is settled
  by its kind: money the user is owed (``purchase``, ``refund``) is committed to the
  balance; a charge never confirmed (``usage``) is reverted, leaving the balance as it was.
* ``sync_usage`` (every 10 minutes): settled transactions not yet synced are sent, in
  batches, to the analytics sink and then stamped ``synced_at``. Delivery is at least once
  (a crash after the send re-sends), so the sink upserts by transaction id.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, timedelta
from typing import Any, Protocol

from celery import shared_task
from sqlalchemy import Connection, bindparam, case, func, literal, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from beatkeeper_examples import db, tables
from beatkeeper_examples.clock import instant, planned_instant

__all__ = [
    "COMMITTED_WHEN_STALE",
    "LocalAnalytics",
    "allocate_monthly",
    "analytics",
    "release_expired_holds",
    "settle_pending",
    "sync_usage",
]

#: Pending kinds committed when stale; every other kind is reverted.
COMMITTED_WHEN_STALE = frozenset({"purchase", "refund"})
log = logging.getLogger(__name__)
u, t, h, s = tables.users, tables.credit_transactions, tables.credit_holds, tables.subscriptions


class Analytics(Protocol):
    def upsert(self, rows: Sequence[dict[str, Any]]) -> None:
        """Store ``rows`` keyed by their ``id`` (a re-sent row replaces the earlier one)."""


@dataclass
class LocalAnalytics:
    """The stand-in analytics store: a dict by transaction id, in memory."""

    rows: dict[int, dict[str, Any]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def upsert(self, rows: Sequence[dict[str, Any]]) -> None:
        with self._lock:
            self.rows.update({row["id"]: row for row in rows})


#: The process's analytics sink (tests replace it).
analytics: Analytics = LocalAnalytics()


def _credit(conn: Connection, per_user: Counter[int]) -> None:
    if per_user:
        conn.execute(
            update(u)
            .where(u.c.id == bindparam("uid"))
            .values(credits=u.c.credits + bindparam("amount")),
            [{"uid": uid, "amount": amount} for uid, amount in per_user.items()],
        )


@shared_task(name="examples.credits.release_expired_holds")  # type: ignore[untyped-decorator]
def release_expired_holds(batch_size: int = 1000, now: str | None = None) -> dict[str, int]:
    """Give back the amount of every unreleased hold that expired at or before now."""
    at = instant(now)
    released = credits = 0
    while True:
        expired = (
            select(h.c.id)
            .where(h.c.released_at.is_(None), h.c.expires_at <= at)
            .limit(batch_size)
            .with_for_update(skip_locked=True)
        )
        with db.connect().begin() as conn:
            rows = conn.execute(
                update(h)
                .where(h.c.id.in_(expired.scalar_subquery()))
                .values(released_at=at)
                .returning(h.c.id, h.c.user_id, h.c.amount)
            ).all()
            _ledger(conn, [(uid, amount, f"hold {hid} expired") for hid, uid, amount in rows], at)
        released, credits = released + len(rows), credits + sum(r.amount for r in rows)
        if len(rows) < batch_size:
            break
    log.info("credit holds released: %d (%d credits)", released, credits)
    return {"released": released, "credits": credits}


def _ledger(conn: Connection, entries: list[tuple[int, int, str]], at: Any) -> None:
    if not entries:
        return
    rows = [
        {"user_id": uid, "amount": amount, "kind": "hold_release", "status": "completed",
         "notes": notes, "created_at": at, "settled_at": at}
        for uid, amount, notes in entries
    ]  # fmt: skip
    conn.execute(pg_insert(t), rows)
    per_user = Counter[int]()
    for uid, amount, _ in entries:
        per_user[uid] += amount
    _credit(conn, per_user)


@shared_task(name="examples.credits.allocate_monthly")  # type: ignore[untyped-decorator]
def allocate_monthly(
    tiers: dict[str, int] | None = None, now: str | None = None
) -> dict[str, int | str]:
    """Allocate each active subscription its tier's credits for the planned month, once."""
    amounts = tiers or {"standard": 100, "premium": 500}
    month = planned_instant(now).astimezone(UTC).date().replace(day=1)
    with db.connect().begin() as conn:
        allocated = _allocate(conn, month, amounts)
        active = conn.execute(
            select(func.count()).select_from(s).where(s.c.active, s.c.tier.in_(amounts))
        ).scalar_one()
    summary: dict[str, int | str] = {
        "month": f"{month:%Y-%m}",
        "allocated": allocated,
        "already": active - allocated,
    }
    log.info("monthly credits for %(month)s: %(allocated)d allocated", summary)
    return summary


def _allocate(conn: Connection, month: date, amounts: dict[str, int]) -> int:
    now = func.now()
    rows = select(
        s.c.user_id, case(amounts, value=s.c.tier), literal("allocation"), literal("completed"),
        func.concat("allocation:", s.c.id, f":{month:%Y-%m}"), literal(f"monthly {month:%Y-%m}"),
        now, now,
    ).where(s.c.active, s.c.tier.in_(amounts), s.c.started_on < _next_month(month))  # fmt: skip
    columns = ["user_id", "amount", "kind", "status", "idempotency_key", "notes", "created_at",
               "settled_at"]  # fmt: skip
    inserted = conn.execute(
        pg_insert(t)
        .from_select(columns, rows)
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
        .returning(t.c.user_id, t.c.amount)
    ).all()
    per_user = Counter[int]()
    for uid, amount in inserted:
        per_user[uid] += amount
    _credit(conn, per_user)
    return len(inserted)


def _next_month(month: date) -> date:
    return (month + timedelta(days=32)).replace(day=1)


@shared_task(name="examples.credits.settle_pending")  # type: ignore[untyped-decorator]
def settle_pending(
    older_than_hours: int = 24, batch_size: int = 500, now: str | None = None
) -> dict[str, int]:
    """Commit or revert, by kind, the transactions pending for over ``older_than_hours``."""
    at = instant(now)
    counts = {"committed": 0, "reverted": 0}
    with db.connect().begin() as conn:
        stale = conn.execute(
            select(t.c.id, t.c.user_id, t.c.amount, t.c.kind)
            .where(t.c.status == "pending", t.c.created_at < at - timedelta(hours=older_than_hours))
            .order_by(t.c.id)
            .limit(batch_size)
            .with_for_update(skip_locked=True)
        ).all()
        per_user = Counter[int]()
        for row in stale:
            commit = row.kind in COMMITTED_WHEN_STALE
            counts["committed" if commit else "reverted"] += 1
            if commit:
                per_user[row.user_id] += row.amount
            conn.execute(
                update(t)
                .where(t.c.id == row.id)
                .values(status="completed" if commit else "reverted", settled_at=at)
            )
        _credit(conn, per_user)
    log.info("stale pending transactions: %(committed)d committed, %(reverted)d reverted", counts)
    return counts


@shared_task(name="examples.credits.sync_usage")  # type: ignore[untyped-decorator]
def sync_usage(
    batch_size: int = 500, max_batches: int = 20, now: str | None = None
) -> dict[str, int]:
    """Send settled, unsynced transactions to the analytics sink; stamp them synced."""
    at = instant(now)
    synced = 0
    for _ in range(max_batches):
        with db.connect().begin() as conn:
            rows = conn.execute(
                select(t.c.id, t.c.user_id, t.c.amount, t.c.kind, t.c.status, t.c.created_at)
                .where(t.c.synced_at.is_(None), t.c.status != "pending")
                .order_by(t.c.id)
                .limit(batch_size)
                .with_for_update(skip_locked=True)
            ).all()
            payload = [{**row._asdict(), "created_at": row.created_at.isoformat()} for row in rows]
            if payload:
                analytics.upsert(payload)  # raises: nothing is stamped, the batch is re-sent
                ids = [row.id for row in rows]
                conn.execute(update(t).where(t.c.id.in_(ids)).values(synced_at=at))
        synced += len(rows)
        if len(rows) < batch_size:
            break
    log.info("credit transactions synced to analytics: %d", synced)
    return {"synced": synced}
