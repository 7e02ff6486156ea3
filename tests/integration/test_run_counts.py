"""Status ``counts`` are lifetime totals: kept in ``run_counts`` by the transaction of each
final transition, they do not shrink when history is pruned."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from beatkeeper_operator.status import load_observations, run_fields
from sqlalchemy import Engine, delete, select
from test_run_transitions import add_run, add_schedule

from beatkeeper.states import RunState
from beatkeeper.store import transition
from beatkeeper.store.models import run_counts, runs
from beatkeeper.store.planning import prune_history

S = RunState
NOW = datetime(2026, 3, 2, tzinfo=UTC)


def counts(db: Engine, schedule_id: uuid.UUID) -> dict[str, int]:
    with db.connect() as connection:
        rows = connection.execute(
            select(run_counts.c.state, run_counts.c.total).where(
                run_counts.c.schedule_id == schedule_id, run_counts.c.total > 0
            )
        )
        return {row.state: row.total for row in rows}


def finish(db: Engine, run_id: uuid.UUID, *path: RunState) -> None:
    with db.begin() as connection:
        for state in path:
            assert transition(connection, run_id, state, now=NOW)


def test_each_final_transition_and_each_run_born_final_counts_once(db: Engine) -> None:
    with db.begin() as connection:
        schedule_id = add_schedule(connection)
        ok, failed, pending = (
            add_run(connection, S.PLANNED, schedule_id=schedule_id, n=n) for n in range(3)
        )
        add_run(connection, S.MISSED, schedule_id=schedule_id, n=3)
    finish(db, ok, S.ENQUEUED, S.RUNNING, S.SUCCEEDED)
    finish(db, failed, S.ENQUEUED, S.RUNNING, S.FAILED)
    assert counts(db, schedule_id) == {"succeeded": 1, "failed": 1, "missed": 1}
    finish(db, pending, S.ENQUEUED)  # not final: not counted
    assert counts(db, schedule_id) == {"succeeded": 1, "failed": 1, "missed": 1}


def test_a_failed_attempt_that_is_retried_is_no_longer_counted_failed(db: Engine) -> None:
    with db.begin() as connection:
        schedule_id = add_schedule(connection)
        run_id = add_run(connection, S.RUNNING, schedule_id=schedule_id)
    finish(db, run_id, S.FAILED)
    assert counts(db, schedule_id) == {"failed": 1}
    finish(db, run_id, S.RETRYING, S.RUNNING, S.SUCCEEDED)
    assert counts(db, schedule_id) == {"succeeded": 1}


def test_pruned_history_keeps_its_counts_and_status_reports_them(db: Engine) -> None:
    with db.begin() as connection:
        schedule_id = add_schedule(connection)
        ids = [add_run(connection, S.RUNNING, schedule_id=schedule_id, n=n) for n in range(5)]
    for run_id in ids:
        finish(db, run_id, S.SUCCEEDED)
    with db.begin() as connection:
        assert prune_history(connection, [(schedule_id, 2, 2)]) == 3
        connection.execute(delete(runs).where(runs.c.id == ids[-1]))  # any other deletion
    with db.connect() as connection:
        left = connection.execute(select(runs.c.id).where(runs.c.schedule_id == schedule_id))
        assert len(left.all()) == 1
        observed = load_observations(connection, [schedule_id])[schedule_id]
    assert run_fields(observed)["counts"] == {"succeeded": 5}
    assert observed.last_success is not None
