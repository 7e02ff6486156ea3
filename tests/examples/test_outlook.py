"""Daily outlook: 06:45 local on weekdays, 08:30 at weekends, once per user and local day."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

from beatkeeper_examples import db, outlook
from sqlalchemy import Engine, select

AddUser = Callable[..., int]


def sent(engine: Engine) -> dict[str, list[date]]:
    query = (
        select(db.users.c.name, db.outlooks.c.local_date)
        .join(db.outlooks, db.outlooks.c.user_id == db.users.c.id)
        .order_by(db.outlooks.c.local_date)
    )
    result: dict[str, list[date]] = {}
    with engine.connect() as conn:
        for name, local in conn.execute(query):
            result.setdefault(name, []).append(local)
    return result


def run(now: str) -> dict[str, int]:
    summary: dict[str, int] = outlook.send_due_outlooks.run(
        weekday_time="06:45", weekend_time="08:30", now=now
    )
    return summary


def test_each_user_gets_the_outlook_at_their_local_weekday_slot(
    examples: Engine, add_user: AddUser
) -> None:
    add_user("aroha", "Pacific/Auckland")
    add_user("sam", "America/Los_Angeles")
    # Monday 2026-03-02 17:30 UTC: 09:30 on Monday in Los Angeles (UTC-8), past its slot;
    # 06:30 on Tuesday in Auckland (UTC+13), not yet.
    assert run("2026-03-02T17:30:00+00:00")["sent"] == 1
    assert sent(examples) == {"sam": [date(2026, 3, 2)]}
    assert run("2026-03-02T17:45:00+00:00")["sent"] == 1
    assert sent(examples) == {"sam": [date(2026, 3, 2)], "aroha": [date(2026, 3, 3)]}
    # Tuesday 06:45 in Los Angeles is Tuesday 14:45 UTC.
    assert run("2026-03-03T14:30:00+00:00")["sent"] == 0
    assert run("2026-03-03T14:45:00+00:00")["sent"] == 1
    assert sent(examples)["sam"] == [date(2026, 3, 2), date(2026, 3, 3)]


def test_weekends_use_the_later_slot(examples: Engine, add_user: AddUser) -> None:
    add_user("aroha", "Pacific/Auckland")
    add_user("sam", "America/Los_Angeles")
    # Saturday 2026-03-07: 08:30 in Auckland is Friday 19:30 UTC, when it is 11:30 in LA
    # on Friday, a weekday whose slot has passed.
    assert run("2026-03-06T19:15:00+00:00") == {"zones": 2, "zones_due": 1, "sent": 1}
    assert sent(examples)["sam"] == [date(2026, 3, 6)]
    assert run("2026-03-06T19:30:00+00:00") == {"zones": 2, "zones_due": 2, "sent": 1}
    assert sent(examples)["aroha"] == [date(2026, 3, 7)]


def test_every_later_run_that_day_sends_nothing(examples: Engine, add_user: AddUser) -> None:
    add_user("sam", "America/Los_Angeles")
    first = run("2026-03-03T15:00:00+00:00")
    later = [run(f"2026-03-03T{hour}:00:00+00:00") for hour in (16, 20, 23)]
    assert first["sent"] == 1
    assert [summary["sent"] for summary in later] == [0, 0, 0]
    # Next local day: Wednesday 06:45 in Los Angeles.
    assert run("2026-03-04T14:45:00+00:00")["sent"] == 1


def test_a_late_run_after_downtime_still_sends_that_days_outlook(
    examples: Engine, add_user: AddUser
) -> None:
    add_user("aroha", "Pacific/Auckland")
    assert run("2026-03-03T09:00:00+00:00")["sent"] == 1  # 22:00 Tuesday in Auckland
    assert sent(examples) == {"aroha": [date(2026, 3, 3)]}


def test_daylight_saving_moves_the_utc_time_of_the_slot(
    examples: Engine, add_user: AddUser
) -> None:
    add_user("sam", "America/Los_Angeles")
    # Los Angeles springs forward on 2026-03-08: Monday the 9th at 06:45 PDT is 13:45 UTC.
    assert run("2026-03-09T13:44:00+00:00")["sent"] == 0
    assert run("2026-03-09T13:45:00+00:00")["sent"] == 1


def test_a_team_outlook_goes_to_its_members_for_their_local_date(
    examples: Engine, add_user: AddUser
) -> None:
    add_user("oliver", "Europe/London", team="london")
    add_user("aroha", "Pacific/Auckland", team="london")
    add_user("sam", "America/Los_Angeles")
    summary = outlook.send_outlook.run(team="london", now="2026-03-02T06:45:00+00:00")
    again = outlook.send_outlook.run(team="london", now="2026-03-02T06:46:00+00:00")
    assert summary == {"team": "london", "sent": 2}
    assert again == {"team": "london", "sent": 0}
    assert sent(examples) == {"oliver": [date(2026, 3, 2)], "aroha": [date(2026, 3, 2)]}
