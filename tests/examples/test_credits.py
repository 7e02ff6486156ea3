"""Credits: holds released once, monthly allocations by tier never twice, stale pending
transactions settled by kind, settled ones synced to analytics at least once."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime
from types import SimpleNamespace
from typing import Any
from unittest import mock

import pytest
from beatkeeper_examples import credits, tables
from conftest import AddUser
from sqlalchemy import Engine, insert, select

NOW = "2026-03-02T12:00:00+00:00"
t = tables.credit_transactions


def balances(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return dict(conn.execute(select(tables.users.c.name, tables.users.c.credits)).all())


def ledger(engine: Engine) -> list[tuple[str, int, str, str | None]]:
    query = select(t.c.kind, t.c.amount, t.c.status, t.c.idempotency_key).order_by(t.c.id)
    with engine.connect() as conn:
        return [(kind, amount, status, key) for kind, amount, status, key in conn.execute(query)]


def add(engine: Engine, table: Any, **values: Any) -> int:
    with engine.begin() as conn:
        return int(conn.execute(insert(table).values(values).returning(table.c.id)).scalar_one())


def test_releases_expired_holds_once_with_a_ledger_entry(
    examples: Engine, add_user: AddUser
) -> None:
    aroha = add_user("aroha", "Pacific/Auckland", credits=10)
    sam = add_user("sam", "America/Los_Angeles", credits=10)
    for user, amount, expires in [
        (aroha, 3, "2026-03-02T08:00:00+00:00"),
        (aroha, 4, "2026-03-02T11:59:00+13:00"),  # 22:59 UTC the day before
        (sam, 5, "2026-03-02T09:00:00-08:00"),  # 17:00 UTC: not yet
    ]:
        add(examples, tables.credit_holds, user_id=user, amount=amount,
            expires_at=datetime.fromisoformat(expires))  # fmt: skip

    summary = credits.release_expired_holds.run(batch_size=1, now=NOW)
    again = credits.release_expired_holds.run(now=NOW)

    assert summary == {"released": 2, "credits": 7}
    assert again == {"released": 0, "credits": 0}
    assert balances(examples) == {"aroha": 17, "sam": 10}
    assert sorted((k, a, s) for k, a, s, _ in ledger(examples)) == [
        ("hold_release", 3, "completed"), ("hold_release", 4, "completed"),
    ]  # fmt: skip


def subscribe(engine: Engine, user: int, tier: str, **values: Any) -> int:
    return add(engine, tables.subscriptions, user_id=user, tier=tier,
               started_on=values.pop("started_on", date(2026, 1, 1)), **values)  # fmt: skip


def allocate(now: str, **kwargs: Any) -> dict[str, Any]:
    summary: dict[str, Any] = credits.allocate_monthly.run(now=now, **kwargs)
    return summary


def test_allocates_by_tier_once_per_subscription_and_month(
    examples: Engine, add_user: AddUser
) -> None:
    aroha, sam, priya = add_user("aroha"), add_user("sam"), add_user("priya")
    premium = subscribe(examples, aroha, "premium")
    subscribe(examples, sam, "standard")
    subscribe(examples, priya, "standard", active=False)

    first = allocate("2026-03-01T00:00:00+00:00")
    again = allocate("2026-03-01T00:00:00+00:00")

    assert first == {"month": "2026-03", "allocated": 2, "already": 0}
    assert again == {"month": "2026-03", "allocated": 0, "already": 2}
    assert balances(examples) == {"aroha": 500, "sam": 100, "priya": 0}
    assert ("allocation", 500, "completed", f"allocation:{premium}:2026-03") in ledger(examples)


def test_a_subscription_added_mid_month_is_allocated_by_a_rerun(
    examples: Engine, add_user: AddUser
) -> None:
    subscribe(examples, add_user("aroha"), "standard")
    allocate("2026-03-01T00:00:00+00:00")
    subscribe(examples, add_user("sam"), "premium", started_on=date(2026, 3, 10))
    rerun = allocate("2026-03-15T00:00:00+00:00", tiers={"standard": 10, "premium": 20})
    assert rerun == {"month": "2026-03", "allocated": 1, "already": 1}
    assert balances(examples) == {"aroha": 100, "sam": 20}


def planned_for(instant: str) -> Any:
    return mock.patch(
        "beatkeeper_examples.clock.current_task",
        SimpleNamespace(request=SimpleNamespace(beatkeeper_planned_at=instant)),
    )


def test_caught_up_months_are_each_allocated_once_for_their_own_month(
    examples: Engine, add_user: AddUser
) -> None:
    subscribe(examples, add_user("aroha"), "standard")
    subscribe(examples, add_user("sam"), "standard", started_on=date(2026, 2, 15))
    # Beat comes back in March and runs every missed month (RunAll), twice over.
    for _ in range(2):
        for month in ("2026-01", "2026-02", "2026-03"):
            with planned_for(f"{month}-01T00:00:00+00:00"):
                credits.allocate_monthly.run()

    keys = sorted(key or "" for _, _, _, key in ledger(examples))
    assert [key.rsplit(":", 1)[1] for key in keys] == [
        "2026-01", "2026-02", "2026-03", "2026-02", "2026-03",
    ]  # fmt: skip
    assert balances(examples) == {"aroha": 300, "sam": 200}


def pending(engine: Engine, user: int, kind: str, amount: int, created: str) -> int:
    return add(engine, t, user_id=user, kind=kind, amount=amount, status="pending",
               created_at=datetime.fromisoformat(created))  # fmt: skip


def test_stale_pending_transactions_are_committed_or_reverted_by_kind(
    examples: Engine, add_user: AddUser
) -> None:
    aroha = add_user("aroha", credits=10)
    pending(examples, aroha, "purchase", 50, "2026-03-01T11:00:00+00:00")
    pending(examples, aroha, "usage", -3, "2026-03-01T10:00:00+00:00")
    pending(examples, aroha, "refund", 4, "2026-03-01T12:30:00+00:00")  # not 24 h yet

    summary = credits.settle_pending.run(now=NOW)
    again = credits.settle_pending.run(now=NOW)

    assert summary == {"committed": 1, "reverted": 1}
    assert again == {"committed": 0, "reverted": 0}
    assert balances(examples) == {"aroha": 60}
    assert [(k, s) for k, _, s, _ in ledger(examples)] == [
        ("purchase", "completed"), ("usage", "reverted"), ("refund", "pending"),
    ]  # fmt: skip


class BrokenAnalytics:
    def upsert(self, rows: Any) -> None:
        raise ConnectionError("analytics unavailable")


@pytest.fixture
def sink(examples: Engine) -> Iterator[credits.LocalAnalytics]:
    fresh = credits.LocalAnalytics()
    saved, credits.analytics = credits.analytics, fresh
    yield fresh
    credits.analytics = saved


def test_sync_sends_settled_transactions_once_and_retries_a_failed_batch(
    examples: Engine, add_user: AddUser, sink: credits.LocalAnalytics
) -> None:
    aroha = add_user("aroha")
    for amount in (1, 2, 3):
        add(examples, t, user_id=aroha, kind="usage", amount=-amount, status="completed")
    pending(examples, aroha, "usage", -9, NOW)

    credits.analytics = BrokenAnalytics()
    with pytest.raises(ConnectionError):
        credits.sync_usage.run(now=NOW)
    credits.analytics = sink
    first = credits.sync_usage.run(batch_size=2, now=NOW)
    again = credits.sync_usage.run(now=NOW)

    assert (first, again) == ({"synced": 3}, {"synced": 0})
    assert sorted(row["amount"] for row in sink.rows.values()) == [-3, -2, -1]
