"""Credits: expired holds released once; monthly allocation idempotent by month."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from types import SimpleNamespace
from unittest import mock

from beatkeeper_examples import credits, db
from sqlalchemy import Engine, insert, select

AddUser = Callable[..., int]


def balances(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return dict(conn.execute(select(db.users.c.name, db.users.c.credits)).all())


def add_hold(engine: Engine, user_id: int, amount: int, expires_at: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            insert(db.credit_holds).values(
                user_id=user_id, amount=amount, expires_at=datetime.fromisoformat(expires_at)
            )
        )


def test_releases_expired_holds_and_returns_their_credits(
    examples: Engine, add_user: AddUser
) -> None:
    aroha = add_user("aroha", "Pacific/Auckland", credits=10)
    sam = add_user("sam", "America/Los_Angeles", credits=10)
    add_hold(examples, aroha, 3, "2026-03-02T08:00:00+00:00")
    add_hold(examples, aroha, 4, "2026-03-02T11:59:00+13:00")  # 22:59 UTC the day before
    add_hold(examples, sam, 5, "2026-03-02T09:00:00-08:00")  # 17:00 UTC: not yet

    summary = credits.release_expired_holds.run(now="2026-03-02T12:00:00+00:00")
    again = credits.release_expired_holds.run(now="2026-03-02T12:00:00+00:00")

    assert summary == {"released": 2, "credits": 7, "users": 1}
    assert again == {"released": 0, "credits": 0, "users": 0}
    assert balances(examples) == {"aroha": 17, "sam": 10}


def test_allocates_each_month_once(examples: Engine, add_user: AddUser) -> None:
    add_user("aroha", "Pacific/Auckland")
    add_user("sam", "America/Los_Angeles")

    march = credits.allocate_monthly.run(credits=100, now="2026-03-01T00:00:00+00:00")
    repeat = credits.allocate_monthly.run(credits=100, now="2026-03-01T00:00:07+00:00")
    april = credits.allocate_monthly.run(credits=100, now="2026-04-01T00:00:00+00:00")

    assert march == {"month": "2026-03", "allocated": 2, "already": 0}
    assert repeat == {"month": "2026-03", "allocated": 0, "already": 2}
    assert april["allocated"] == 2
    assert balances(examples) == {"aroha": 200, "sam": 200}


def test_a_user_added_mid_month_is_allocated_by_a_rerun(
    examples: Engine, add_user: AddUser
) -> None:
    add_user("aroha", "Pacific/Auckland")
    credits.allocate_monthly.run(credits=50, now="2026-03-01T00:00:00+00:00")
    add_user("sam", "America/Los_Angeles")
    rerun = credits.allocate_monthly.run(credits=50, now="2026-03-15T00:00:00+00:00")
    assert rerun == {"month": "2026-03", "allocated": 1, "already": 1}
    assert balances(examples) == {"aroha": 50, "sam": 50}


def test_a_caught_up_run_allocates_the_month_it_was_planned_for(
    examples: Engine, add_user: AddUser
) -> None:
    add_user("aroha", "Pacific/Auckland")
    planned = SimpleNamespace(
        request=SimpleNamespace(beatkeeper_planned_at="2026-02-01T00:00:00+00:00")
    )
    with mock.patch("beatkeeper_examples.clock.current_task", planned):
        summary = credits.allocate_monthly.run(credits=100)
    assert summary["month"] == "2026-02"
