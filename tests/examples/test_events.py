"""Events: one bulk UPDATE completes the events that ended, in any time zone, once."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from beatkeeper_examples import db, events
from sqlalchemy import Engine, insert, select

AUCKLAND = ZoneInfo("Pacific/Auckland")
LOS_ANGELES = ZoneInfo("America/Los_Angeles")


def add_events(engine: Engine, ends: dict[str, datetime]) -> None:
    with engine.begin() as conn:
        conn.execute(insert(db.events), [{"title": t, "ends_at": e} for t, e in ends.items()])


def statuses(engine: Engine) -> dict[str, str]:
    with engine.connect() as conn:
        return dict(conn.execute(select(db.events.c.title, db.events.c.status)).all())


def test_completes_events_whose_local_end_time_has_passed(examples: Engine) -> None:
    # 2026-03-02T12:00Z is 01:00 on 3 March in Auckland and 04:00 on 2 March in Los Angeles.
    add_events(
        examples,
        {
            "auckland-ended": datetime(2026, 3, 3, 0, 30, tzinfo=AUCKLAND),
            "auckland-later": datetime(2026, 3, 3, 1, 30, tzinfo=AUCKLAND),
            "la-ended": datetime(2026, 3, 2, 3, 59, tzinfo=LOS_ANGELES),
            "la-later": datetime(2026, 3, 2, 4, 1, tzinfo=LOS_ANGELES),
        },
    )

    summary = events.complete_ended.run(now="2026-03-02T12:00:00+00:00")

    assert summary == {"completed": 2}
    assert statuses(examples) == {
        "auckland-ended": "completed",
        "auckland-later": "scheduled",
        "la-ended": "completed",
        "la-later": "scheduled",
    }


def test_an_event_ending_exactly_now_is_completed(examples: Engine) -> None:
    add_events(examples, {"edge": datetime(2026, 3, 2, 1, 0, tzinfo=AUCKLAND)})
    assert events.complete_ended.run(now="2026-03-01T12:00:00+00:00") == {"completed": 1}


def test_a_repeated_run_changes_nothing(examples: Engine) -> None:
    add_events(examples, {"done": datetime(2026, 3, 1, tzinfo=LOS_ANGELES)})
    events.complete_ended.run(now="2026-03-02T12:00:00+00:00")
    with examples.connect() as conn:
        first = conn.execute(select(db.events.c.completed_at)).scalar_one()

    assert events.complete_ended.run(now="2026-03-02T12:05:00+00:00") == {"completed": 0}
    with examples.connect() as conn:
        assert conn.execute(select(db.events.c.completed_at)).scalar_one() == first
