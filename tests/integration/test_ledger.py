"""A pool process's writes against PostgreSQL: the held connection, the claim, outcomes
written again."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select, update
from test_run_transitions import add_run, add_schedule

from beatkeeper.decisions.ownership import Owner
from beatkeeper.states import RunState
from beatkeeper.store import DatabaseUnavailable, lookups, recording
from beatkeeper.store.held_connection import HeldConnection, Statement
from beatkeeper.store.models import runs, schedules
from beatkeeper.store.prepared import statements_for

S = RunState
WHEN = datetime(2026, 3, 29, 1, 30, 0, 250000, tzinfo=UTC)


def probe(sql: str) -> Statement:
    return Statement.of("test_probe_" + uuid.uuid4().hex[:8], sql, {})


@pytest.fixture
def held(db: Engine) -> HeldConnection:
    connection = db.connect()
    # A pooled session may come back from a test that changed it (Beat's publishing one).
    connection.exec_driver_sql("SET synchronous_commit = on")
    connection.commit()
    return HeldConnection(connection)


def test_a_sent_statement_is_answered_when_collected(held: HeldConnection) -> None:
    rows = probe("SELECT generate_series(1, %(n)s::INTEGER)")
    for n in (3, 0):
        held.send(rows, {"n": n}, tag=f"n={n}")
        assert held.pending == 1
        assert held.collect() == [(f"n={n}", n)]
    assert held.pending == 0
    assert held.collect() == []


def test_parameters_arrive_as_the_values_they_were(held: HeldConnection) -> None:
    run_id = uuid.uuid4()
    same = probe(
        "SELECT 1 WHERE %(id)s::UUID = %(id_text)s::UUID AND %(at)s::TIMESTAMPTZ = %(at_text)s"
        "::TIMESTAMPTZ AND %(yes)s::BOOLEAN AND NOT %(no)s::BOOLEAN AND %(none)s::TEXT IS NULL"
        " AND %(count)s::INTEGER = 7 AND %(words)s::TEXT = 'it''s 100%%'"
    )
    values = {
        "id": run_id,
        "id_text": str(run_id),
        "at": WHEN,
        "at_text": "2026-03-29 01:30:00.25+00",
        "yes": True,
        "no": False,
        "none": None,
        "count": 7,
        "words": "it's 100%",
    }
    assert held.execute(same, values) == 1


def test_a_repeated_parameter_is_sent_once() -> None:
    statement = Statement.of("twice", "SELECT %(a)s, %(b)s, %(a)s", {"b": "constant"})
    assert statement.sql == b"SELECT $1, $2, $1"
    assert statement.values({"a": 1}) == [b"1", b"constant"]


def test_a_failing_statement_names_the_problem(held: HeldConnection) -> None:
    with pytest.raises(DatabaseUnavailable, match="division by zero") as caught:
        held.execute(probe("SELECT 1 / %(zero)s::INTEGER"), {"zero": 0})
    assert str(caught.value).startswith("a statement failed on PostgreSQL at ")
    assert caught.value.failed
    assert not caught.value.lost


def test_a_statement_timeout_is_worded_as_one_not_as_a_network_fault(
    held: HeldConnection,
) -> None:
    held.execute(probe("SELECT set_config('statement_timeout', '50ms', false)"), {})
    with pytest.raises(DatabaseUnavailable) as caught:
        held.execute(probe("SELECT pg_sleep(2)"), {})
    assert str(caught.value).startswith("a statement failed on PostgreSQL at ")
    assert str(caught.value).endswith("canceling statement due to statement timeout")


def test_a_connection_lost_before_the_answer_reports_what_went_unanswered(
    held: HeldConnection,
) -> None:
    held.send(probe("SELECT pg_terminate_backend(pg_backend_pid())"), {}, tag="suicide")
    with pytest.raises(DatabaseUnavailable) as caught:
        held.collect()
    assert held.unanswered() == ["suicide"]
    assert caught.value.lost
    assert str(caught.value).startswith("lost the connection to PostgreSQL at ")


def test_one_statement_at_a_time_is_in_flight(held: HeldConnection) -> None:
    held.send(probe("SELECT 1"), {})
    with pytest.raises(RuntimeError, match="collect the pending answer"):
        held.execute(probe("SELECT 2"), {})


ME = Owner("host", 42, "0123456789ab")


def record_again(connection: Any, run_id: uuid.UUID, schedule_id: uuid.UUID, result: str) -> None:
    recording.record_success_again(
        connection, run_id=run_id, schedule_id=schedule_id, owner=ME, result=result, now=WHEN
    )


@pytest.mark.parametrize("state", [S.RUNNING, S.ENQUEUED])
def test_a_success_written_again_is_recorded_once(db: Engine, state: RunState) -> None:
    # ENQUEUED: the server restarted and forgot the claim, which commits asynchronously.
    with db.begin() as connection:
        schedule_id = add_schedule(connection)
        connection.execute(
            update(schedules).where(schedules.c.id == schedule_id).values(consecutive_failures=2)
        )
        run_id = add_run(connection, state, schedule_id=schedule_id)
    with db.begin() as connection:
        record_again(connection, run_id, schedule_id, "42")
    with db.begin() as connection:
        record_again(connection, run_id, schedule_id, "43")
    with db.connect() as connection:
        run = connection.execute(select(runs).where(runs.c.id == run_id)).one()
        failures = connection.execute(
            select(schedules.c.consecutive_failures).where(schedules.c.id == schedule_id)
        ).scalar_one()
    assert (run.state, run.result, run.finished_at) == (S.SUCCEEDED, "42", WHEN)
    assert failures == 0


def test_a_run_finished_otherwise_is_not_turned_into_a_success(db: Engine) -> None:
    with db.begin() as connection:
        schedule_id = add_schedule(connection)
        run_id = add_run(connection, S.FAILED, schedule_id=schedule_id)
    with db.begin() as connection:
        record_again(connection, run_id, schedule_id, "42")
    with db.connect() as connection:
        state = connection.execute(select(runs.c.state).where(runs.c.id == run_id)).scalar_one()
    assert state == S.FAILED


def test_only_the_claim_commits_without_waiting_for_the_wal_flush(db: Engine) -> None:
    statements = statements_for(db.dialect)
    assert b"set_config" in statements.claim.sql
    assert b"synchronous_commit" not in statements.success.sql


def claim_values(db: Engine, run_id: uuid.UUID, **changed: object) -> dict[str, object]:
    """The claim's parameters for a message of ``run_id`` as Beat sends it."""
    with db.connect() as connection:
        row = connection.execute(
            select(runs.c.task, runs.c.schedule_id, schedules.c.namespace, schedules.c.name)
            .join(schedules, schedules.c.id == runs.c.schedule_id)
            .where(runs.c.id == run_id)
        ).one()
    owner = recording.owner_columns(ME)
    return {"id": run_id, "now": WHEN, **owner, **row._asdict(), **changed}


def test_the_claim_statement_moves_only_an_enqueued_run(db: Engine, held: HeldConnection) -> None:
    claim = statements_for(db.dialect).claim
    with db.begin() as connection:
        enqueued = add_run(connection, S.ENQUEUED)
        finished = add_run(connection, S.SUCCEEDED)
    assert held.execute(claim, claim_values(db, enqueued)) == 1
    assert held.execute(claim, claim_values(db, enqueued)) == 0
    assert held.execute(claim, claim_values(db, finished)) == 0
    with db.connect() as connection:
        run = connection.execute(select(runs).where(runs.c.id == enqueued)).one()
    owner = (run.worker, run.worker_pid, run.worker_session)
    assert (run.state, owner, run.started_at) == (S.RUNNING, ("host", 42, ME.session), WHEN)
    # The setting was local to the claim's transaction: outcomes on the held stay durable.
    durable = probe("SELECT 1 WHERE current_setting('synchronous_commit') = 'on'")
    assert held.execute(durable, {}) == 1


@pytest.mark.parametrize(
    "changed",
    [{"task": "app.other"}, {"schedule_id": uuid.uuid4()}, {"namespace": "x"}, {"name": "x"}],
    ids=["task", "schedule-id", "namespace", "name"],
)
def test_the_claim_statement_moves_no_run_for_a_message_of_something_else(
    db: Engine, held: HeldConnection, changed: dict[str, object]
) -> None:
    # A name of its own: the pooled connection may have prepared the claim already.
    claim = dataclasses.replace(statements_for(db.dialect).claim, name=uuid.uuid4().hex.encode())
    with db.begin() as connection:
        planned = add_run(connection, S.PLANNED)
    assert held.execute(claim, claim_values(db, planned, **changed)) == 0
    assert held.execute(claim, claim_values(db, planned)) == 1  # the run's own message


def test_the_claim_statement_moves_no_waiting_run_before_it_is_due(
    db: Engine, held: HeldConnection
) -> None:
    claim = dataclasses.replace(statements_for(db.dialect).claim, name=uuid.uuid4().hex.encode())
    with db.begin() as connection:
        planned = add_run(connection, S.PLANNED)
        connection.execute(
            update(runs)
            .where(runs.c.id == planned)
            .values(due_at=datetime.now(UTC) + timedelta(hours=1))
        )
    assert held.execute(claim, claim_values(db, planned)) == 0
    with db.connect() as connection:
        assert (
            connection.execute(select(runs.c.state).where(runs.c.id == planned)).scalar()
            == S.PLANNED
        )


def test_an_answer_waited_for_with_a_timeout_gives_up(held: HeldConnection) -> None:
    held.send(probe("SELECT pg_sleep(2)"), {}, tag="slow")
    with pytest.raises(DatabaseUnavailable, match=r"no answer from PostgreSQL within 0\.2s"):
        held.collect(timeout=0.2)
    assert held.unanswered() == ["slow"]


def test_a_runs_owner_is_listed_as_people_read_it(db: Engine) -> None:
    with db.begin() as connection:
        run_id = add_run(connection, S.ENQUEUED)
    assert held_claims(db, run_id)
    with db.connect() as connection:
        [listed] = [run for run in lookups.list_runs(connection) if run.id == run_id]
    assert listed.worker == "host (pid 42, session 0123456789ab)"


def held_claims(db: Engine, run_id: uuid.UUID) -> bool:
    """The claim as a pool process makes it, for the run's own message."""
    values: dict[str, Any] = claim_values(db, run_id)
    with db.connect() as connection:
        return recording.claim(
            HeldConnection(connection),
            statements_for(db.dialect),
            run_id=run_id,
            owner=ME,
            now=datetime.now(UTC),
            task=values["task"],
            schedule_id=values["schedule_id"],
            schedule=f"{values['namespace']}/{values['name']}",
        )
