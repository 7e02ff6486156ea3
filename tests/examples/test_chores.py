"""Chores: instances generated ahead with rotation and end guards, reminders with a
cooldown that survives a lost Redis and a failed send, streaks, leaderboards, clean-up."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest
import redis
from beatkeeper_examples import chores, db, dispatch, tables
from beatkeeper_examples.chores import cleanup, generation, reminders, rollups
from conftest import AddUser
from sqlalchemy import Engine, func, insert, select, update

c, i, n = tables.chores, tables.chore_instances, tables.notifications
NOON = "2026-03-02T12:00:00+00:00"


def add_chore(engine: Engine, rule: str, **values: Any) -> int:
    row = {
        "household": "kauri",
        "title": "chore",
        "rrule": rule,
        "time_zone": "Europe/London",
        "starts_on": date(2026, 1, 1),
        "due_time": time(9, 0),
        **values,
    }
    with engine.begin() as conn:
        return int(conn.execute(insert(c).values(row).returning(c.c.id)).scalar_one())


def instances(engine: Engine, chore_id: int) -> list[tuple[date, int | None, int]]:
    query = select(i.c.due_date, i.c.assignee_id, i.c.sequence).where(i.c.chore_id == chore_id)
    with engine.connect() as conn:
        return sorted((d, a, q) for d, a, q in conn.execute(query.order_by(i.c.due_date)))


def due_dates(engine: Engine, chore_id: int) -> list[date]:
    return [day for day, _, _ in instances(engine, chore_id)]


def generate(horizon_days: int, now: str, **kwargs: Any) -> dict[str, int]:
    counts: dict[str, int] = generation.generate_instances.run(
        horizon_days=horizon_days, now=now, **kwargs
    )
    return counts


def test_generates_instances_over_the_horizon_once(examples: Engine) -> None:
    chore = add_chore(examples, "FREQ=DAILY;INTERVAL=2")

    first = generate(6, NOON)
    again = generate(6, NOON)

    assert first == {"chores": 1, "created": 3, "ended": 0, "invalid": 0}
    assert again["created"] == 0
    assert due_dates(examples, chore) == [date(2026, 3, 2), date(2026, 3, 4), date(2026, 3, 6)]


def test_a_longer_horizon_or_a_later_day_adds_only_the_new_days(examples: Engine) -> None:
    chore = add_chore(examples, "FREQ=DAILY")
    generate(2, NOON)
    assert generate(2, "2026-03-03T12:00:00+00:00")["created"] == 1
    assert generate(4, "2026-03-03T12:00:00+00:00")["created"] == 2
    assert due_dates(examples, chore) == [date(2026, 3, d) for d in range(2, 7)]


def test_assignees_rotate_by_occurrence_even_after_clean_up(
    examples: Engine, add_user: AddUser
) -> None:
    ana, ben, cy = add_user("ana"), add_user("ben"), add_user("cy")
    chore = add_chore(examples, "FREQ=DAILY", assignees=[ana, ben, cy])
    generate(2, NOON)
    with examples.begin() as conn:  # the clean-up removed the first instance
        conn.execute(i.delete().where(i.c.due_date == date(2026, 3, 2)))
    generate(5, NOON)

    assert [(who, seq) for _, who, seq in instances(examples, chore)] == [
        (ben, 2), (cy, 3), (ana, 4), (ben, 5),
    ]  # fmt: skip


def test_stops_at_end_date_until_count_and_max_occurrences(examples: Engine) -> None:
    ends = add_chore(examples, "FREQ=DAILY", ends_on=date(2026, 3, 3))
    until = add_chore(examples, "FREQ=DAILY;UNTIL=20260304T090000")
    counted = add_chore(examples, "FREQ=DAILY;COUNT=2", starts_on=date(2026, 3, 1))
    capped = add_chore(examples, "FREQ=DAILY", max_occurrences=3)
    over = add_chore(examples, "FREQ=DAILY", ends_on=date(2026, 2, 1))

    generate(2, "2026-03-01T08:00:00+00:00")
    summary = generate(10, "2026-03-01T08:00:00+00:00")

    assert due_dates(examples, ends)[-1] == date(2026, 3, 3)
    assert due_dates(examples, until)[-1] == date(2026, 3, 4)
    assert due_dates(examples, counted) == [date(2026, 3, 1), date(2026, 3, 2)]
    assert due_dates(examples, capped) == [date(2026, 3, d) for d in (1, 2, 3)]
    assert due_dates(examples, over) == []
    assert summary["ended"] == 1  # the chore that ended in February


def test_skipped_months_dates_and_months_without_the_day(examples: Engine) -> None:
    rent = add_chore(examples, "FREQ=MONTHLY;BYMONTHDAY=31")
    mowing = add_chore(examples, "FREQ=MONTHLY;BYMONTHDAY=1", skip_months=[12, 1, 2])
    daily = add_chore(examples, "FREQ=DAILY", skip_dates=[date(2026, 1, 2)])

    generate(365, "2026-01-01T00:00:00+00:00")

    assert [d.month for d in due_dates(examples, rent)] == [1, 3, 5, 7, 8, 10, 12]
    assert [d.month for d in due_dates(examples, mowing)] == [3, 4, 5, 6, 7, 8, 9, 10, 11]
    assert date(2026, 1, 2) not in due_dates(examples, daily)


def test_due_times_are_wall_clock_times_in_the_chore_zone(examples: Engine) -> None:
    chore = add_chore(examples, "FREQ=DAILY", time_zone="Pacific/Auckland", due_time=time(7, 30))
    # Auckland leaves daylight saving on 2026-04-05 (UTC+13 to UTC+12).
    generate(3, "2026-04-03T20:00:00+00:00")
    with examples.connect() as conn:
        query = select(i.c.due_date, i.c.due_at).where(i.c.chore_id == chore)
        due = dict(conn.execute(query.order_by(i.c.due_date)).all())
    assert due == {
        date(2026, 4, 4): datetime(2026, 4, 3, 18, 30, tzinfo=UTC),
        date(2026, 4, 5): datetime(2026, 4, 4, 19, 30, tzinfo=UTC),
        date(2026, 4, 6): datetime(2026, 4, 5, 19, 30, tzinfo=UTC),
    }


def test_batches_cover_every_chore(examples: Engine) -> None:
    for _ in range(5):
        add_chore(examples, "FREQ=DAILY")
    assert generate(1, NOON, batch_size=2) == {"chores": 5, "created": 5, "ended": 0, "invalid": 0}


def test_a_chore_with_an_unusable_rule_or_zone_is_skipped_and_the_rest_generated(
    examples: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    bad_rule = add_chore(examples, "FREQ=SOMETIMES")
    bad_zone = add_chore(examples, "FREQ=DAILY", time_zone="Mars/Olympus_Mons")
    good = add_chore(examples, "FREQ=DAILY")

    summary = generate(2, NOON)

    assert (summary["created"], summary["invalid"]) == (2, 2)
    assert len(due_dates(examples, good)) == 2
    assert f"chore {bad_rule} skipped" in caplog.text
    assert f"chore {bad_zone} skipped" in caplog.text


def open_instance(engine: Engine, due_at: str, assignee: int, **values: Any) -> int:
    chore = add_chore(engine, "FREQ=DAILY", title=values.pop("title", "Bins"))
    at = datetime.fromisoformat(due_at)
    row = {"chore_id": chore, "sequence": 1, "due_date": at.date(), "due_at": at,
           "assignee_id": assignee, **values}  # fmt: skip
    with engine.begin() as conn:
        return int(conn.execute(insert(i).values(row).returning(i.c.id)).scalar_one())


def written(engine: Engine) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        return [
            (link, kind) for link, kind in conn.execute(select(n.c.link, n.c.kind).order_by(n.c.id))
        ]


def scan(now: str, **kwargs: Any) -> dict[str, int]:
    counts: dict[str, int] = reminders.scan_due_instances.run(now=now, **kwargs)
    return counts


def test_reminds_assignees_of_due_and_overdue_open_instances(
    examples: Engine, add_user: AddUser, sink: dispatch.LocalSink
) -> None:
    ana = add_user("ana")
    soon = open_instance(examples, "2026-03-02T12:20:00+00:00", ana, title="Bins")
    late = open_instance(examples, "2026-03-02T11:00:00+00:00", ana, status="in_progress")
    open_instance(examples, "2026-03-02T13:30:00+00:00", ana)  # beyond the lead window
    open_instance(examples, "2026-03-02T12:10:00+00:00", ana, status="completed")
    open_instance(examples, "2026-03-02T12:10:00+00:00", ana, status="expired")

    summary = scan(NOON, lead_minutes=60)

    assert summary == {"due_soon": 1, "overdue": 1, "reminded": 2, "cooling_down": 0,
                       "delivered": 2, "delivery_failed": 0}  # fmt: skip
    assert sorted(written(examples)) == sorted(
        [(f"chore_instance:{soon}", "due_soon"), (f"chore_instance:{late}", "overdue")]
    )
    assert {(s.user_id, s.title) for s in sink.sent} >= {(ana, "Bins is due at 12:20 UTC")}


def test_a_second_scan_within_the_cooldown_sends_nothing_then_overdue_does(
    examples: Engine, add_user: AddUser, sink: dispatch.LocalSink
) -> None:
    instance = open_instance(examples, "2026-03-02T12:30:00+00:00", add_user("ana"))
    scan(NOON, cooldown_minutes=120)
    again = scan("2026-03-02T12:05:00+00:00", cooldown_minutes=120)
    overdue = scan("2026-03-02T12:35:00+00:00", cooldown_minutes=120)

    assert (again["reminded"], again["cooling_down"]) == (0, 1)
    assert overdue["reminded"] == 1  # a different reminder: the chore is now overdue
    link = f"chore_instance:{instance}"
    assert written(examples) == [(link, "due_soon"), (link, "overdue")]
    assert len(sink.sent) == 2


def test_the_database_holds_the_cooldown_when_redis_lost_the_keys(
    examples: Engine, examples_redis: redis.Redis, add_user: AddUser, sink: dispatch.LocalSink
) -> None:
    open_instance(examples, "2026-03-02T11:00:00+00:00", add_user("ana"))
    scan(NOON, cooldown_minutes=120)
    examples_redis.delete(*examples_redis.keys(f"{db.schema_of(examples)}:cooldown:*"))

    assert scan("2026-03-02T13:00:00+00:00", cooldown_minutes=120)["reminded"] == 0
    assert scan("2026-03-02T14:01:00+00:00", cooldown_minutes=120)["reminded"] == 1


def test_the_cooldown_key_is_set_after_the_commit_with_the_cooldown_as_ttl(
    examples: Engine, examples_redis: redis.Redis, add_user: AddUser, sink: dispatch.LocalSink
) -> None:
    ana = add_user("ana")
    instance = open_instance(examples, "2026-03-02T11:00:00+00:00", ana)
    key = f"{db.schema_of(examples)}:cooldown:{ana}:overdue:chore_instance:{instance}"
    scan(NOON, cooldown_minutes=120)
    assert 7100 < examples_redis.ttl(key) <= 7200


def test_a_failed_commit_leaves_no_cooldown_so_the_reminder_is_not_lost(
    examples: Engine, examples_redis: redis.Redis, add_user: AddUser, sink: dispatch.LocalSink,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    open_instance(examples, "2026-03-02T11:00:00+00:00", add_user("ana"))

    def broken(conn: Any, row: Any, *, at: datetime, cooldown: timedelta) -> bool:
        raise RuntimeError("the database went away mid-transaction")

    with monkeypatch.context() as patched:
        patched.setattr(reminders, "_remind", broken)
        with pytest.raises(RuntimeError):
            scan(NOON)
    assert examples_redis.keys(f"{db.schema_of(examples)}:cooldown:*") == []
    assert scan(NOON)["reminded"] == 1


class FlakySender:
    def __init__(self) -> None:
        self.calls = 0

    def send(self, notification: dispatch.Notification) -> None:
        self.calls += 1
        raise ConnectionError("push service unavailable")


def test_a_failed_send_is_delivered_by_the_next_scan(
    examples: Engine, add_user: AddUser, sink: dispatch.LocalSink
) -> None:
    open_instance(examples, "2026-03-02T11:00:00+00:00", add_user("ana"))
    dispatch.use_sender(FlakySender())
    failed = scan(NOON)
    dispatch.use_sender(sink)
    later = scan("2026-03-02T12:05:00+00:00")

    assert (failed["reminded"], failed["delivery_failed"]) == (1, 1)
    assert (later["reminded"], later["delivered"]) == (0, 1)
    assert len(sink.sent) == 1


def complete(engine: Engine, chore: int, user: int, *days: str, points: int = 1) -> None:
    rows = [
        {"chore_id": chore, "sequence": k, "due_date": date.fromisoformat(day),
         "due_at": datetime.fromisoformat(f"{day}T09:00:00+00:00"), "status": "completed",
         "completed_at": datetime.fromisoformat(f"{day}T10:00:00+00:00"), "completed_by": user}
        for k, day in enumerate(days, 1)
    ]  # fmt: skip
    with engine.begin() as conn:
        conn.execute(insert(i), rows)
        conn.execute(update(c).where(c.c.id == chore).values(points=points))


def test_streaks_count_consecutive_local_days() -> None:
    days = {date(2026, 3, d) for d in (1, 2, 3, 5, 6)}
    assert rollups.streaks(days, today=date(2026, 3, 7)) == (2, 3)  # today still open
    assert rollups.streaks(days, today=date(2026, 3, 8)) == (0, 3)


def test_a_user_in_an_unknown_zone_keeps_their_streak_and_the_others_are_computed(
    examples: Engine, add_user: AddUser
) -> None:
    ana, ben = add_user("ana"), add_user("ben", "Mars/Olympus_Mons")
    chore = add_chore(examples, "FREQ=DAILY")
    complete(examples, chore, ana, "2026-03-01")
    other = add_chore(examples, "FREQ=DAILY", title="other")
    complete(examples, other, ben, "2026-03-01")
    assert rollups.recompute_streaks.run(now="2026-03-01T20:00:00+00:00") == {"users": 1}


def test_recompute_streaks_is_idempotent_and_keeps_the_longest(
    examples: Engine, add_user: AddUser
) -> None:
    ana = add_user("ana", household="kauri")
    chore = add_chore(examples, "FREQ=DAILY")
    complete(examples, chore, ana, "2026-03-01", "2026-03-02", "2026-03-03", points=2)

    first = rollups.recompute_streaks.run(now="2026-03-03T20:00:00+00:00")
    again = rollups.recompute_streaks.run(now="2026-03-03T20:00:00+00:00")
    later = rollups.recompute_streaks.run(window_days=2, now="2026-03-06T20:00:00+00:00")

    assert first == again == later == {"users": 1}
    with examples.connect() as conn:
        s = tables.user_scores
        score = conn.execute(select(s).where(s.c.user_id == ana)).one()
    assert (score.current_streak, score.longest_streak) == (0, 3)
    assert (score.total_completed, score.total_points) == (3, 6)


def test_leaderboards_rank_each_household_per_period(examples: Engine, add_user: AddUser) -> None:
    ana, ben = add_user("ana", household="kauri"), add_user("ben", household="kauri")
    chore = add_chore(examples, "FREQ=DAILY")
    other = add_chore(examples, "FREQ=DAILY", title="other")
    complete(examples, chore, ana, "2026-03-02", "2026-02-20")
    complete(examples, other, ben, "2026-03-01")

    first = rollups.rebuild_leaderboards.run(now="2026-03-02T20:00:00+00:00")
    again = rollups.rebuild_leaderboards.run(now="2026-03-02T20:00:00+00:00")

    assert first == again
    board = tables.leaderboards
    with examples.connect() as conn:
        query = select(board.c.period, board.c.period_start, board.c.user_id, board.c.rank)
        standings = [
            (period, start, user, rank) for period, start, user, rank in conn.execute(query)
        ]
    assert ("daily", date(2026, 3, 2), ana, 1) in standings
    assert ("weekly", date(2026, 3, 2), ana, 1) in standings  # 2 March 2026 is a Monday
    assert ("weekly", date(2026, 2, 23), ben, 1) in standings  # last week, rebuilt too
    assert ("monthly", date(2026, 3, 1), ana, 1) in standings
    assert ("monthly", date(2026, 3, 1), ben, 1) in standings  # tied: both first
    assert ("all_time", rollups.ALL_TIME, ana, 1) in standings
    assert ("all_time", rollups.ALL_TIME, ben, 2) in standings


def test_prune_deletes_old_delivered_notifications_and_finished_instances_in_batches(
    examples: Engine, add_user: AddUser
) -> None:
    ana = add_user("ana")
    old = datetime(2025, 1, 1, tzinfo=UTC)
    with examples.begin() as conn:
        conn.execute(insert(n), [
            {"user_id": ana, "kind": "overdue", "link": f"x:{k}", "title": "t", "body": "b",
             "created_at": old, "dispatched_at": old if k < 5 else None}
            for k in range(7)
        ])  # fmt: skip
    chore = add_chore(examples, "FREQ=DAILY")
    complete(examples, chore, ana, "2025-01-01", "2025-01-02", "2026-03-01")

    summary = cleanup.prune_old_data.run(batch_size=2, now=NOON)

    assert summary == {"notifications": 5, "instances": 2}
    with examples.connect() as conn:
        left = conn.execute(select(func.count()).select_from(n)).scalar_one()
    assert left == 2  # undelivered notifications are kept


def test_the_package_names_every_job() -> None:
    assert set(chores.__all__) == {"cleanup", "generation", "reminders", "rollups"}


def test_overlapping_generation_and_scans_create_and_remind_once(
    examples: Engine, add_user: AddUser, sink: dispatch.LocalSink
) -> None:
    from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415

    ana = add_user("ana")
    for _ in range(20):
        add_chore(examples, "FREQ=DAILY", due_time=time(12, 10), assignees=[ana])
    with ThreadPoolExecutor(4) as pool:
        made = list(pool.map(lambda _: generate(3, NOON, batch_size=3), range(4)))
        scans = list(pool.map(lambda _: scan(NOON, lead_minutes=60), range(4)))

    assert sum(m["created"] for m in made) == 60
    with examples.connect() as conn:
        assert conn.execute(select(func.count()).select_from(i)).scalar_one() == 60
    assert sum(s["reminded"] for s in scans) == 20
    assert len(written(examples)) == 20
    assert len(sink.sent) == 20
