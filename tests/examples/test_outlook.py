"""Daily outlook: pre-generation skips what exists unless forced, notifications reach each
user once at their local slot, the weekly review adjusts templates once, health reports."""

from __future__ import annotations

import re
from datetime import date, datetime, time
from typing import Any

import pytest
from beatkeeper_examples import dispatch, seed, tables
from beatkeeper_examples.outlook import generation, health, notifications, optimisation
from conftest import AddUser
from sqlalchemy import Engine, insert, select, update

o = tables.daily_outlooks
ACTIVE = datetime.fromisoformat("2026-03-01T00:00:00+00:00")


def add_templates(engine: Engine) -> None:
    rows = [{"name": name, "body": body} for name, body in seed.TEMPLATES.items()]
    with engine.begin() as conn:
        conn.execute(insert(tables.content_templates), rows)


def outlooks(engine: Engine) -> list[tuple[int, date, str, datetime | None]]:
    query = select(o.c.user_id, o.c.outlook_date, o.c.content, o.c.notified_at).order_by(o.c.id)
    with engine.connect() as conn:
        return [(uid, day, content, at) for uid, day, content, at in conn.execute(query)]


def generate(now: str, **kwargs: Any) -> dict[str, Any]:
    summary: dict[str, Any] = generation.generate_daily_outlooks.run(now=now, **kwargs)
    return summary


def test_generates_tomorrow_for_active_users_and_skips_existing(
    examples: Engine, add_user: AddUser
) -> None:
    add_templates(examples)
    ana = add_user("ana", last_active_at=ACTIVE)
    add_user("idle", last_active_at=datetime.fromisoformat("2026-01-01T00:00:00+00:00"))
    add_user("never")

    first = generate("2026-03-02T05:00:00+00:00")
    again = generate("2026-03-02T05:00:00+00:00")

    assert first == {
        "success": True, "target_date": "2026-03-03", "total_users": 1,
        "generated_count": 1, "skipped_count": 0, "failed_count": 0, "errors": [],
    }  # fmt: skip
    assert (again["generated_count"], again["skipped_count"]) == (0, 1)
    assert [(uid, day) for uid, day, _, _ in outlooks(examples)] == [(ana, date(2026, 3, 3))]


def test_force_regenerates_and_a_target_date_is_honoured(
    examples: Engine, add_user: AddUser
) -> None:
    add_templates(examples)
    add_user("ana", last_active_at=ACTIVE)
    generate("2026-03-02T05:00:00+00:00", target_date="2026-03-10")
    with examples.begin() as conn:
        conn.execute(update(o).values(content="stale"))

    forced = generate("2026-03-02T05:00:00+00:00", target_date="2026-03-10", force_regenerate=True)

    assert (forced["target_date"], forced["generated_count"]) == ("2026-03-10", 1)
    assert outlooks(examples)[0][2] != "stale"


def test_a_user_whose_content_fails_is_counted_and_the_rest_generated(
    examples: Engine, add_user: AddUser
) -> None:
    with examples.begin() as conn:
        conn.execute(insert(tables.content_templates).values(name="bad", body="{nickname}"))
    add_user("ana", last_active_at=ACTIVE)
    summary = generate("2026-03-02T05:00:00+00:00", batch_size=1)
    assert (summary["failed_count"], summary["generated_count"]) == (1, 0)
    assert "KeyError('nickname')" in summary["errors"][0]


def test_slots_are_weekday_and_weekend_times() -> None:
    weekday, weekend = time(6, 45), time(8, 30)
    monday, saturday = datetime(2026, 3, 2, 7), datetime(2026, 3, 7, 7)
    assert notifications.slot_for(monday, weekday=weekday, weekend=weekend) == weekday
    assert notifications.slot_for(saturday, weekday=weekday, weekend=weekend) == weekend


def notify(now: str, **kwargs: Any) -> dict[str, Any]:
    summary: dict[str, Any] = notifications.send_notifications.run(now=now, **kwargs)
    return summary


def test_each_user_is_notified_once_at_their_local_slot(
    examples: Engine, add_user: AddUser, sink: dispatch.LocalSink
) -> None:
    add_templates(examples)
    # Monday 2 March 2026, 06:50 in London (UTC) is 19:50 in Auckland and 22:50 Sunday in LA.
    london = add_user("london", "Europe/London", last_active_at=ACTIVE)
    auckland = add_user("auckland", "Pacific/Auckland")
    add_user("la", "America/Los_Angeles")  # 22:50 on Sunday: past its 08:30 weekend slot
    early = add_user("early-bird", "Europe/London", outlook_weekday_time=time(7, 30))
    add_user("opted-out", "Europe/London", outlook_enabled=False)
    generation.generate_daily_outlooks.run(
        target_date="2026-03-02", now="2026-03-01T05:00:00+00:00"
    )

    first = notify("2026-03-02T06:50:00+00:00")
    again = notify("2026-03-02T07:05:00+00:00")
    later = notify("2026-03-02T07:35:00+00:00")

    assert first["notifications_sent"] == 3  # london, auckland (evening), la (Sunday night)
    assert again["notifications_sent"] == 0
    assert later["notifications_sent"] == 1  # the early bird's own 07:30
    notified = {n.user_id for n in sink.sent}
    assert {london, auckland, early} <= notified
    assert len(sink.sent) == 4
    assert all(at is not None for _, _, _, at in outlooks(examples))


def test_a_user_without_a_pregenerated_outlook_gets_one_on_the_spot(
    examples: Engine, add_user: AddUser, sink: dispatch.LocalSink
) -> None:
    add_templates(examples)
    ana = add_user("ana", "Europe/London")
    assert notify("2026-03-07T08:31:00+00:00")["notifications_sent"] == 1  # a Saturday
    assert notify("2026-03-07T08:29:00+00:00", weekend_time="08:00")["notifications_sent"] == 0
    assert [(uid, day) for uid, day, _, _ in outlooks(examples)] == [(ana, date(2026, 3, 7))]


def test_the_global_switch_turns_every_notification_off(
    examples: Engine, add_user: AddUser, sink: dispatch.LocalSink
) -> None:
    add_templates(examples)
    add_user("ana", "Europe/London")
    summary = notify("2026-03-02T09:00:00+00:00", enabled=False)
    assert summary == {"success": True, "enabled": False, "notifications_sent": 0}
    assert sink.sent == []


def add_outlooks(engine: Engine, user: int, template: str, views: int, total: int) -> None:
    rows = [
        {"user_id": user, "outlook_date": date(2026, 2, 1 + k), "template": template,
         "content": "c", "generated_at": ACTIVE, "viewed_at": ACTIVE if k < views else None,
         "rating": 4}
        for k in range(total)
    ]  # fmt: skip
    with engine.begin() as conn:
        conn.execute(insert(o), rows)


def test_the_weekly_review_puts_low_performers_into_a_test_once(
    examples: Engine, add_user: AddUser
) -> None:
    add_templates(examples)
    ana, ben = add_user("ana"), add_user("ben")
    add_outlooks(examples, ana, "saving", views=2, total=7)
    add_outlooks(examples, ben, "goals", views=6, total=7)
    now = "2026-02-08T03:00:00+00:00"

    first = optimisation.optimize_content.run(min_outlooks=5, now=now)
    again = optimisation.optimize_content.run(min_outlooks=5, now=now)

    assert first["low_performing_content"] == ["saving"]
    assert (first["ab_tests_triggered"], again["ab_tests_triggered"]) == (1, 0)
    assert first["performance_metrics"] == {
        "total_outlooks": 14, "view_rate": round(8 / 14, 4), "engagement_rate": 0.0,
    }  # fmt: skip
    ct = tables.content_templates
    with examples.connect() as conn:
        weights = dict(conn.execute(select(ct.c.name, ct.c.weight)).all())
    assert weights == {"spending": 1.0, "saving": 0.5, "goals": 1.0}


def test_health_is_degraded_when_tomorrow_was_not_generated(
    examples: Engine, add_user: AddUser
) -> None:
    add_templates(examples)
    add_user("ana", last_active_at=ACTIVE)
    before = health.health_check.run(now="2026-03-02T05:30:00+00:00")
    missing = health.health_check.run(now="2026-03-02T08:00:00+00:00")
    generate("2026-03-02T05:00:00+00:00")
    fine = health.health_check.run(now="2026-03-02T08:00:00+00:00")

    assert before["status"] == fine["status"] == "healthy"
    assert missing["problems"] == ["no outlooks generated for 2026-03-03"]


def test_a_user_in_an_unknown_zone_is_skipped_and_the_others_notified(
    examples: Engine, add_user: AddUser, sink: dispatch.LocalSink
) -> None:
    add_templates(examples)
    add_user("lost", "Mars/Olympus_Mons")
    ana = add_user("ana", "Europe/London")
    summary = notify("2026-03-02T09:00:00+00:00")
    assert (summary["notifications_sent"], summary["invalid_time_zone"]) == (1, 1)
    assert [n.user_id for n in sink.sent] == [ana]


@pytest.mark.parametrize(
    ("task", "kwargs", "message"),
    [
        (generation.generate_daily_outlooks, {"target_date": "tomorrow"},
         "target_date='tomorrow' is not a date: write it as 2026-03-01"),
        (notifications.send_notifications, {"weekday_time": "6.45"},
         "weekday_time='6.45' is not a time of day: write it as 06:45"),
    ],
)  # fmt: skip
def test_a_bad_kwarg_is_named_in_one_line(
    examples: Engine, task: Any, kwargs: dict[str, str], message: str
) -> None:
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        task.run(now="2026-03-02T09:00:00+00:00", **kwargs)
