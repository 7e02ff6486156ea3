"""A pool process's writes against PostgreSQL: the wire, the claim, outcomes written again."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from beatkeeper_worker import ledger
from beatkeeper_worker.statements import statements_for
from beatkeeper_worker.wire import Statement, Wire, WireError
from sqlalchemy import Engine, select, update
from test_run_transitions import add_run, add_schedule

from beatkeeper.states import RunState
from beatkeeper.store.models import runs, schedules

S = RunState
WHEN = datetime(2026, 3, 29, 1, 30, 0, 250000, tzinfo=UTC)


def probe(sql: str) -> Statement:
    return Statement.of("test_probe_" + uuid.uuid4().hex[:8], sql, {})


@pytest.fixture
def wire(db: Engine) -> Wire:
    connection = db.connect()
    # A pooled session may come back from a test that changed it (Beat's publishing one).
    connection.exec_driver_sql("SET synchronous_commit = on")
    connection.commit()
    return Wire(connection)


def test_a_sent_statement_is_answered_when_collected(wire: Wire) -> None:
    rows = probe("SELECT generate_series(1, %(n)s::INTEGER)")
    for n in (3, 0):
        wire.send(rows, {"n": n}, tag=f"n={n}")
        assert wire.pending == 1
        assert wire.collect() == [(f"n={n}", n)]
    assert wire.pending == 0
    assert wire.collect() == []


def test_parameters_arrive_as_the_values_they_were(wire: Wire) -> None:
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
    assert wire.execute(same, values) == 1


def test_a_repeated_parameter_is_sent_once() -> None:
    statement = Statement.of("twice", "SELECT %(a)s, %(b)s, %(a)s", {"b": "constant"})
    assert statement.sql == b"SELECT $1, $2, $1"
    assert statement.values({"a": 1}) == [b"1", b"constant"]


def test_a_failing_statement_names_the_problem(wire: Wire) -> None:
    with pytest.raises(WireError, match="division by zero"):
        wire.execute(probe("SELECT 1 / %(zero)s::INTEGER"), {"zero": 0})


def test_a_connection_lost_before_the_answer_reports_what_went_unanswered(wire: Wire) -> None:
    wire.send(probe("SELECT pg_terminate_backend(pg_backend_pid())"), {}, tag="suicide")
    with pytest.raises(WireError):
        wire.collect()
    assert wire.unanswered() == ["suicide"]


def test_one_statement_at_a_time_is_in_flight(wire: Wire) -> None:
    wire.send(probe("SELECT 1"), {})
    with pytest.raises(RuntimeError, match="collect the pending answer"):
        wire.execute(probe("SELECT 2"), {})


def delivery(run_id: uuid.UUID, schedule_id: uuid.UUID) -> ledger.Delivery:
    return ledger.Delivery(run_id, "default/s", schedule_id, "host", redelivered=False, task="t")


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
        ledger.record_again(connection, delivery(run_id, schedule_id), "me", "42", now=WHEN)
    with db.begin() as connection:
        ledger.record_again(connection, delivery(run_id, schedule_id), "me", "43", now=WHEN)
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
        ledger.record_again(connection, delivery(run_id, schedule_id), "me", "42", now=WHEN)
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
    return {"id": run_id, "now": WHEN, "worker": "me", **row._asdict(), **changed}


def test_the_claim_statement_moves_only_an_enqueued_run(db: Engine, wire: Wire) -> None:
    claim = statements_for(db.dialect).claim
    with db.begin() as connection:
        enqueued = add_run(connection, S.ENQUEUED)
        finished = add_run(connection, S.SUCCEEDED)
    assert wire.execute(claim, claim_values(db, enqueued)) == 1
    assert wire.execute(claim, claim_values(db, enqueued)) == 0
    assert wire.execute(claim, claim_values(db, finished)) == 0
    with db.connect() as connection:
        run = connection.execute(select(runs).where(runs.c.id == enqueued)).one()
    assert (run.state, run.worker, run.started_at) == (S.RUNNING, "me", WHEN)
    # The setting was local to the claim's transaction: outcomes on the wire stay durable.
    durable = probe("SELECT 1 WHERE current_setting('synchronous_commit') = 'on'")
    assert wire.execute(durable, {}) == 1


@pytest.mark.parametrize(
    "changed",
    [{"task": "app.other"}, {"schedule_id": uuid.uuid4()}, {"namespace": "x"}, {"name": "x"}],
    ids=["task", "schedule-id", "namespace", "name"],
)
def test_the_claim_statement_moves_no_run_for_a_message_of_something_else(
    db: Engine, wire: Wire, changed: dict[str, object]
) -> None:
    # A name of its own: the pooled connection may have prepared the claim already.
    claim = dataclasses.replace(statements_for(db.dialect).claim, name=uuid.uuid4().hex.encode())
    with db.begin() as connection:
        planned = add_run(connection, S.PLANNED)
    assert wire.execute(claim, claim_values(db, planned, **changed)) == 0
    assert wire.execute(claim, claim_values(db, planned)) == 1  # the run's own message


def test_the_claim_statement_moves_no_waiting_run_before_it_is_due(db: Engine, wire: Wire) -> None:
    claim = dataclasses.replace(statements_for(db.dialect).claim, name=uuid.uuid4().hex.encode())
    with db.begin() as connection:
        planned = add_run(connection, S.PLANNED)
        connection.execute(
            update(runs)
            .where(runs.c.id == planned)
            .values(due_at=datetime.now(UTC) + timedelta(hours=1))
        )
    assert wire.execute(claim, claim_values(db, planned)) == 0
    with db.connect() as connection:
        assert (
            connection.execute(select(runs.c.state).where(runs.c.id == planned)).scalar()
            == S.PLANNED
        )


def test_an_answer_waited_for_with_a_timeout_gives_up(wire: Wire) -> None:
    wire.send(probe("SELECT pg_sleep(2)"), {}, tag="slow")
    with pytest.raises(WireError, match=r"no answer from PostgreSQL within 0\.2s"):
        wire.collect(timeout=0.2)
    assert wire.unanswered() == ["slow"]
