"""Chores: instances generated ahead from RRULEs, and reminders with a cooldown."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any

import redis
from beatkeeper_examples import chores, db
from sqlalchemy import Engine, insert, select, update


def add_chore(engine: Engine, rule: str, **values: Any) -> int:
    row = {
        "title": "chore",
        "rrule": rule,
        "time_zone": "Europe/London",
        "starts_on": date(2026, 1, 1),
        "due_time": time(9, 0),
        **values,
    }
    with engine.begin() as conn:
        return int(
            conn.execute(insert(db.chores).values(row).returning(db.chores.c.id)).scalar_one()
        )


def due_dates(engine: Engine, chore_id: int) -> list[date]:
    with engine.connect() as conn:
        query = select(db.chore_instances.c.due_date).where(
            db.chore_instances.c.chore_id == chore_id
        )
        return sorted(conn.execute(query).scalars())


def test_generates_instances_over_the_horizon_once(examples: Engine) -> None:
    chore = add_chore(examples, "FREQ=DAILY;INTERVAL=2")
    now = "2026-03-02T12:00:00+00:00"

    first = chores.generate_instances.run(horizon_days=6, now=now)
    again = chores.generate_instances.run(horizon_days=6, now=now)

    assert first == {"chores": 1, "created": 3, "existing": 0}
    assert again == {"chores": 1, "created": 0, "existing": 3}
    assert due_dates(examples, chore) == [date(2026, 3, 2), date(2026, 3, 4), date(2026, 3, 6)]


def test_a_longer_horizon_adds_only_the_new_days(examples: Engine) -> None:
    add_chore(examples, "FREQ=DAILY")
    chores.generate_instances.run(horizon_days=2, now="2026-03-02T12:00:00+00:00")
    later = chores.generate_instances.run(horizon_days=2, now="2026-03-03T12:00:00+00:00")
    assert later == {"chores": 1, "created": 1, "existing": 1}


def test_stops_at_the_chore_end_date_and_the_rrule_until(examples: Engine) -> None:
    ends = add_chore(examples, "FREQ=DAILY", ends_on=date(2026, 3, 3))
    until = add_chore(examples, "FREQ=DAILY;UNTIL=20260304T090000")
    counted = add_chore(examples, "FREQ=DAILY;COUNT=2", starts_on=date(2026, 3, 1))
    over = add_chore(examples, "FREQ=DAILY", ends_on=date(2026, 2, 1))

    chores.generate_instances.run(horizon_days=10, now="2026-03-01T08:00:00+00:00")

    assert due_dates(examples, ends)[-1] == date(2026, 3, 3)
    assert due_dates(examples, until)[-1] == date(2026, 3, 4)
    assert due_dates(examples, counted) == [date(2026, 3, 1), date(2026, 3, 2)]
    assert due_dates(examples, over) == []


def test_skipped_months_and_months_without_the_day_have_no_instance(examples: Engine) -> None:
    rent = add_chore(examples, "FREQ=MONTHLY;BYMONTHDAY=31")
    mowing = add_chore(examples, "FREQ=MONTHLY;BYMONTHDAY=1", skip_months=[12, 1, 2])

    chores.generate_instances.run(horizon_days=365, now="2026-01-01T00:00:00+00:00")

    assert [d.month for d in due_dates(examples, rent)] == [1, 3, 5, 7, 8, 10, 12]
    assert [d.month for d in due_dates(examples, mowing)] == [3, 4, 5, 6, 7, 8, 9, 10, 11]


def test_due_times_are_wall_clock_times_in_the_chore_zone(examples: Engine) -> None:
    chore = add_chore(examples, "FREQ=DAILY", time_zone="Pacific/Auckland", due_time=time(7, 30))
    # Auckland leaves daylight saving on 2026-04-05 (UTC+13 to UTC+12).
    chores.generate_instances.run(horizon_days=3, now="2026-04-03T20:00:00+00:00")
    with examples.connect() as conn:
        query = select(db.chore_instances.c.due_date, db.chore_instances.c.due_at).where(
            db.chore_instances.c.chore_id == chore
        )
        due = dict(conn.execute(query.order_by(db.chore_instances.c.due_date)).all())
    assert due == {
        date(2026, 4, 4): datetime(2026, 4, 3, 18, 30, tzinfo=UTC),
        date(2026, 4, 5): datetime(2026, 4, 4, 19, 30, tzinfo=UTC),
        date(2026, 4, 6): datetime(2026, 4, 5, 19, 30, tzinfo=UTC),
    }


def open_instance(engine: Engine, due_at: str) -> int:
    chore = add_chore(engine, "FREQ=DAILY")
    at = datetime.fromisoformat(due_at)
    row = {"chore_id": chore, "due_date": at.date(), "due_at": at}
    with engine.begin() as conn:
        query = insert(db.chore_instances).values(row).returning(db.chore_instances.c.id)
        return int(conn.execute(query).scalar_one())


def reminded(engine: Engine) -> list[tuple[int, str]]:
    with engine.connect() as conn:
        query = select(db.reminders.c.instance_id, db.reminders.c.kind).order_by(db.reminders.c.id)
        return [(i, k) for i, k in conn.execute(query)]


def test_reminds_about_due_and_overdue_instances_within_the_lead(examples: Engine) -> None:
    soon = open_instance(examples, "2026-03-02T12:20:00+00:00")
    late = open_instance(examples, "2026-03-02T11:00:00+00:00")
    open_instance(examples, "2026-03-02T13:00:00+00:00")  # beyond the lead window
    done = open_instance(examples, "2026-03-02T12:10:00+00:00")
    with examples.begin() as conn:
        conn.execute(
            update(db.chore_instances)
            .where(db.chore_instances.c.id == done)
            .values(done_at=datetime.now(UTC))
        )

    summary = chores.send_reminders.run(lead_minutes=30, now="2026-03-02T12:00:00+00:00")

    assert summary == {"due": 1, "overdue": 1, "sent": 2, "cooling_down": 0}
    assert sorted(reminded(examples)) == sorted([(soon, "due"), (late, "overdue")])


def test_a_second_scan_within_the_cooldown_sends_nothing(examples: Engine) -> None:
    instance = open_instance(examples, "2026-03-02T12:00:00+00:00")
    chores.send_reminders.run(cooldown_minutes=120, now="2026-03-02T12:00:00+00:00")
    again = chores.send_reminders.run(cooldown_minutes=120, now="2026-03-02T12:05:00+00:00")
    assert again["sent"] == 0
    assert again["cooling_down"] == 1
    assert reminded(examples) == [(instance, "due")]


def test_the_database_holds_the_cooldown_when_redis_lost_the_key(
    examples: Engine, examples_redis: redis.Redis
) -> None:
    instance = open_instance(examples, "2026-03-02T12:00:00+00:00")
    chores.send_reminders.run(cooldown_minutes=120, now="2026-03-02T12:00:00+00:00")
    examples_redis.delete(f"{db.schema_of(examples)}:reminder:{instance}")

    within = chores.send_reminders.run(cooldown_minutes=120, now="2026-03-02T13:00:00+00:00")
    assert within["sent"] == 0

    examples_redis.delete(f"{db.schema_of(examples)}:reminder:{instance}")
    after = chores.send_reminders.run(cooldown_minutes=120, now="2026-03-02T14:01:00+00:00")
    assert after["sent"] == 1
    assert reminded(examples) == [(instance, "due"), (instance, "overdue")]


def test_the_cooldown_key_expires_with_the_cooldown(
    examples: Engine, examples_redis: redis.Redis
) -> None:
    instance = open_instance(examples, "2026-03-02T12:00:00+00:00")
    chores.send_reminders.run(cooldown_minutes=120, now="2026-03-02T12:00:00+00:00")
    ttl = examples_redis.ttl(f"{db.schema_of(examples)}:reminder:{instance}")
    assert 7100 < ttl <= 7200
