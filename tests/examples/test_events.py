"""Events: confirmed and ongoing events whose end has passed are completed, in any time
zone, once, in bounded batches; nothing else is touched."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from beatkeeper_examples import events, tables
from sqlalchemy import Engine, insert, select

AUCKLAND = ZoneInfo("Pacific/Auckland")
LOS_ANGELES = ZoneInfo("America/Los_Angeles")
NOW = "2026-03-02T12:00:00+00:00"
e = tables.events


def add_event(
    engine: Engine, title: str, ends_at: datetime | None, status: str = "confirmed"
) -> None:
    starts = (ends_at or datetime.fromisoformat(NOW)) - timedelta(hours=2)
    row = {"title": title, "starts_at": starts, "ends_at": ends_at, "status": status}
    with engine.begin() as conn:
        conn.execute(insert(e).values(row))


def statuses(engine: Engine) -> dict[str, str]:
    with engine.connect() as conn:
        return dict(conn.execute(select(e.c.title, e.c.status)).all())


def test_completes_events_whose_end_has_passed_in_any_zone(examples: Engine) -> None:
    # 2026-03-02T12:00Z is 01:00 on 3 March in Auckland and 04:00 on 2 March in Los Angeles.
    add_event(examples, "auckland-ended", datetime(2026, 3, 3, 0, 30, tzinfo=AUCKLAND))
    add_event(examples, "auckland-later", datetime(2026, 3, 3, 1, 30, tzinfo=AUCKLAND))
    add_event(examples, "la-ended", datetime(2026, 3, 2, 3, 59, tzinfo=LOS_ANGELES), "ongoing")
    add_event(examples, "la-later", datetime(2026, 3, 2, 4, 1, tzinfo=LOS_ANGELES), "ongoing")

    assert events.complete_ended.run(now=NOW) == {"completed": 2}
    assert statuses(examples) == {
        "auckland-ended": "completed",
        "auckland-later": "confirmed",
        "la-ended": "completed",
        "la-later": "ongoing",
    }


def test_only_confirmed_and_ongoing_events_with_an_end_are_completed(examples: Engine) -> None:
    ended = datetime(2026, 3, 1, tzinfo=AUCKLAND)
    for status in ("draft", "cancelled", "completed"):
        add_event(examples, status, ended, status)
    add_event(examples, "open-ended", None)

    assert events.complete_ended.run(now=NOW) == {"completed": 0}
    assert statuses(examples)["open-ended"] == "confirmed"
    assert statuses(examples)["draft"] == "draft"


def test_an_end_exactly_now_is_not_yet_passed(examples: Engine) -> None:
    add_event(examples, "ends-now", datetime.fromisoformat(NOW))
    assert events.complete_ended.run(now=NOW) == {"completed": 0}


def test_a_repeated_run_completes_nothing_more(examples: Engine) -> None:
    add_event(examples, "ended", datetime(2026, 3, 1, tzinfo=AUCKLAND))
    assert events.complete_ended.run(now=NOW) == {"completed": 1}
    assert events.complete_ended.run(now=NOW) == {"completed": 0}
    with examples.connect() as conn:
        completed_at = conn.execute(select(e.c.completed_at)).scalar_one()
    assert completed_at == datetime.fromisoformat(NOW)


def test_a_backlog_is_completed_in_batches(examples: Engine) -> None:
    for k in range(7):
        add_event(examples, f"ended-{k}", datetime(2026, 3, 1, tzinfo=AUCKLAND))
    assert events.complete_ended.run(batch_size=3, now=NOW) == {"completed": 7}
    assert set(statuses(examples).values()) == {"completed"}
