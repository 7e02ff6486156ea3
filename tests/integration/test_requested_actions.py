"""The store side of ``kubectl beatkeeper``: resume and a replay per token (cancel:
``test_cancel_requests``)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, select, update
from store_rows import add_run, billing_schedule

from beatkeeper.states import RunState
from beatkeeper.store import lookups, requests
from beatkeeper.store.models import runs, schedules

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
S = RunState


def nightly(engine: Engine) -> lookups.ScheduleRef:
    applied = billing_schedule(engine, now=NOW, pauseAfterFailures=3)
    with engine.connect() as db:
        return lookups.find_schedule(db, applied.namespace, applied.name)


def state_of(engine: Engine, run_id: uuid.UUID) -> str:
    with engine.connect() as db:
        return str(db.execute(select(runs.c.state).where(runs.c.id == run_id)).scalar_one())


def test_resume_lifts_only_a_pause(db: Engine) -> None:
    schedule = nightly(db)
    with db.begin() as connection:
        assert requests.resume(connection, schedule, now=NOW) is None
        connection.execute(
            update(schedules)
            .where(schedules.c.id == schedule.id)
            .values(suspended=True, paused_reason="3 failures", consecutive_failures=3)
        )
        assert requests.resume(connection, schedule, now=NOW) == "3 failures"
        row = connection.execute(select(schedules).where(schedules.c.id == schedule.id)).one()
    assert (row.suspended, row.paused_reason, row.consecutive_failures) == (False, None, 0)


def test_replay_once_per_token(db: Engine) -> None:
    schedule = nightly(db)
    dead = add_run(db, schedule, NOW - timedelta(hours=1), S.DEAD)
    with db.begin() as connection:
        first = requests.replay_once(connection, dead, token="t1", now=NOW)
        assert first is not None
        assert requests.replay_once(connection, dead, token="t1", now=NOW) is None
        assert requests.replay_once(connection, dead, token="t2", now=NOW) is not None


def test_run_prefix_within_one_schedule(db: Engine) -> None:
    schedule = nightly(db)
    run_id = add_run(db, schedule, NOW - timedelta(hours=1), S.DEAD)
    with db.connect() as connection:
        found = lookups.find_run_id(connection, str(run_id)[:8], schedule_id=schedule.id)
        assert found == run_id
        with pytest.raises(lookups.NotFoundError):
            lookups.find_run_id(connection, str(run_id), schedule_id=uuid.uuid4())
