"""Run transitions against PostgreSQL: each legal move happens once, others change nothing."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Connection, Engine, insert, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from beatkeeper.states import TRANSITIONS, RunState, sources_for
from beatkeeper.store import Run, Schedule, explain_transition, transition, transition_many
from beatkeeper.store.models import runs, schedules
from beatkeeper.store.runs import SUMMARY_MAX_CHARS

S = RunState
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
NOW = T0 + timedelta(minutes=5)
LEGAL = [(src, dst) for src, targets in TRANSITIONS.items() for dst in sorted(targets)]


def add_schedule(connection: Connection) -> uuid.UUID:
    schedule_id = uuid.uuid4()
    connection.execute(
        insert(schedules).values(
            id=schedule_id,
            namespace="default",
            name=f"s-{schedule_id.hex[:8]}",
            generation=1,
            spec={"task": "app.tick", "interval": "1m"},
            spec_hash="h",
            task="app.tick",
            zone="UTC",
            trigger="every 1m",
        )
    )
    return schedule_id


def add_run(
    connection: Connection, state: RunState, *, schedule_id: uuid.UUID | None = None, n: int = 0
) -> uuid.UUID:
    schedule_id = schedule_id or add_schedule(connection)
    planned = T0 + timedelta(minutes=n)
    return connection.execute(
        insert(runs)
        .values(schedule_id=schedule_id, planned_at=planned, due_at=planned, task="app.tick")
        .values(state=state.value)
        .returning(runs.c.id)
    ).scalar_one()


def row(connection: Connection, run_id: uuid.UUID) -> dict[str, Any]:
    return dict(connection.execute(select(runs).where(runs.c.id == run_id)).mappings().one())


def state_of(connection: Connection, run_id: uuid.UUID) -> RunState:
    return RunState(row(connection, run_id)["state"])


@pytest.mark.parametrize(("source", "target"), LEGAL, ids=[f"{s}->{t}" for s, t in LEGAL])
def test_a_legal_transition_happens_exactly_once(
    db: Engine, source: RunState, target: RunState
) -> None:
    with db.begin() as connection:
        run_id = add_run(connection, source)
        assert transition(connection, run_id, target, now=NOW) is True
        after = row(connection, run_id)
        assert after["state"] == target
        assert after["updated_at"] == NOW
        assert transition(connection, run_id, target, now=NOW + timedelta(seconds=1)) is False
        assert row(connection, run_id) == after


@pytest.mark.parametrize("target", list(RunState))
def test_illegal_transitions_change_nothing(db: Engine, target: RunState) -> None:
    with db.begin() as connection:
        schedule_id = add_schedule(connection)
        illegal = [s for s in RunState if s not in sources_for(target)]
        ids = [add_run(connection, s, schedule_id=schedule_id, n=i) for i, s in enumerate(illegal)]
        before = [row(connection, run_id) for run_id in ids]
        for run_id in ids:
            assert transition(connection, run_id, target, now=NOW) is False
        assert [row(connection, run_id) for run_id in ids] == before


def test_a_missing_run_does_not_transition(db: Engine) -> None:
    with db.begin() as connection:
        missing = uuid.uuid4()
        assert transition(connection, missing, S.ENQUEUED, now=NOW) is False
        assert explain_transition(connection, missing, S.ENQUEUED) == (
            f"run {missing} does not exist"
        )


def test_explain_says_why_a_transition_is_refused(db: Engine) -> None:
    with db.begin() as connection:
        done = add_run(connection, S.SUCCEEDED)
        assert explain_transition(connection, done, S.RUNNING) == (
            f"run {done} is succeeded: succeeded is a final state: "
            "a succeeded run never changes again"
        )
        planned = add_run(connection, S.PLANNED)
        assert explain_transition(connection, planned, S.SUCCEEDED).startswith(
            f"run {planned} is planned: planned → succeeded is not a transition: "
            "succeeded is reached from running"
        )


def test_each_state_stamps_its_time_for_the_current_attempt(db: Engine) -> None:
    step = timedelta(seconds=1)
    with db.begin() as connection:
        run_id = add_run(connection, S.PLANNED)
        path = [S.ENQUEUED, S.RUNNING, S.FAILED, S.RETRYING, S.ENQUEUED, S.RUNNING, S.SUCCEEDED]
        seen = []
        for i, target in enumerate(path, start=1):
            assert transition(connection, run_id, target, now=T0 + i * step)
            r = row(connection, run_id)
            seen.append((r["state"], r["enqueued_at"], r["started_at"], r["finished_at"]))
    at = [T0 + i * step for i in range(len(path) + 1)]
    assert seen == [
        ("enqueued", at[1], None, None),
        ("running", at[1], at[2], None),
        ("failed", at[1], at[2], at[3]),
        ("retrying", at[1], at[2], at[3]),
        ("enqueued", at[5], None, None),  # the second attempt starts with a clean slate
        ("running", at[5], at[6], None),
        ("succeeded", at[5], at[6], at[7]),
    ]


def test_fields_are_written_with_the_transition(db: Engine) -> None:
    retry_at = NOW + timedelta(minutes=2)
    with db.begin() as connection:
        run_id = add_run(connection, S.FAILED)
        moved = transition(
            connection, run_id, S.RETRYING, now=NOW, due_at=retry_at, attempt=runs.c.attempt + 1
        )
        assert moved
        assert transition(connection, run_id, S.ENQUEUED, now=retry_at, worker=None)
        assert transition(connection, run_id, S.RUNNING, now=retry_at, worker="celery@w1")
        assert transition(connection, run_id, S.SUCCEEDED, now=retry_at, result="42")
        r = row(connection, run_id)
    assert (r["due_at"], r["attempt"], r["worker"], r["result"]) == (retry_at, 2, "celery@w1", "42")


def test_result_and_error_are_cut_to_a_summary(db: Engine) -> None:
    with db.begin() as connection:
        run_id = add_run(connection, S.RUNNING)
        huge = "x" * (SUMMARY_MAX_CHARS + 500)
        assert transition(connection, run_id, S.FAILED, now=NOW, error=huge)
        error = row(connection, run_id)["error"]
    assert error == "x" * SUMMARY_MAX_CHARS + "… [500 more characters cut]"


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"state": "succeeded"}, "cannot set state"),
        ({"planned_at": T0}, "cannot set planned_at"),
        ({"schedule_id": uuid.uuid4()}, "cannot set schedule_id"),
        ({"bogus": 1}, "cannot set bogus"),
    ],
)
def test_only_run_details_may_be_set(db: Engine, fields: dict[str, Any], problem: str) -> None:
    with db.begin() as connection:
        run_id = add_run(connection, S.PLANNED)
        with pytest.raises(TypeError, match=problem):
            transition(connection, run_id, S.ENQUEUED, now=NOW, **fields)


def test_now_must_carry_a_time_zone(db: Engine) -> None:
    with db.begin() as connection:
        run_id = add_run(connection, S.PLANNED)
        with pytest.raises(ValueError, match="timezone-aware"):
            transition(connection, run_id, S.ENQUEUED, now=datetime(2026, 1, 1))


def test_transition_many_moves_only_runs_in_a_source_state(db: Engine) -> None:
    with db.begin() as connection:
        schedule_id = add_schedule(connection)
        planned = [add_run(connection, S.PLANNED, schedule_id=schedule_id, n=i) for i in range(3)]
        running = add_run(connection, S.RUNNING, schedule_id=schedule_id, n=3)
        moved = transition_many(connection, [*planned, running], S.ENQUEUED, now=NOW)
        assert sorted(moved) == sorted(planned)
        assert transition_many(connection, planned, S.ENQUEUED, now=NOW) == []
        assert transition_many(connection, [], S.ENQUEUED, now=NOW) == []
        assert state_of(connection, running) is S.RUNNING


def test_transitions_work_in_an_orm_session(db: Engine) -> None:
    with Session(db) as session, session.begin():
        schedule_id = add_schedule(session.connection())
        run = Run(schedule_id=schedule_id, planned_at=T0, due_at=T0, task="app.tick")
        session.add(run)
        session.flush()
        assert run.state == "planned"
        assert transition(session, run.id, S.ENQUEUED, now=NOW)
        assert transition_many(session, [run.id], S.RUNNING, now=NOW) == [run.id]
        session.refresh(run)
        assert run.state == S.RUNNING
        assert session.get(Schedule, schedule_id) is not None


# --- races -----------------------------------------------------------------------------------


def _in_thread(work: Callable[[], bool]) -> tuple[threading.Thread, list[bool]]:
    outcome: list[bool] = []
    thread = threading.Thread(target=lambda: outcome.append(work()))
    thread.start()
    return thread, outcome


def _wait_until_blocked(engine: Engine, application_name: str, thread: threading.Thread) -> None:
    """Wait (polling, not sleeping blindly) until that connection waits on a lock."""
    deadline = time.monotonic() + 20
    with engine.connect() as probe:
        while thread.is_alive() and time.monotonic() < deadline:
            waiting = probe.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE application_name = :name AND wait_event_type = 'Lock'"
                ),
                {"name": application_name},
            ).scalar_one()
            if waiting:
                return
            probe.rollback()  # a fresh snapshot of pg_stat_activity each time round
    pytest.fail(f"{application_name} never blocked on the lock")


def test_of_two_racing_transitions_exactly_one_wins(db: Engine) -> None:
    with db.begin() as connection:
        run_id = add_run(connection, S.ENQUEUED)
    loser_name = f"loser-{uuid.uuid4().hex[:8]}"

    with db.connect() as winner:
        # The winner updates first and holds the row lock until it commits.
        assert transition(winner, run_id, S.RUNNING, now=NOW, worker="w1")

        def lose() -> bool:
            with db.connect() as loser:
                loser.execute(
                    text("SELECT set_config('application_name', :n, false)"), {"n": loser_name}
                )
                moved = transition(loser, run_id, S.EXPIRED, now=NOW)
                loser.commit()
                return moved

        thread, outcome = _in_thread(lose)
        _wait_until_blocked(db, loser_name, thread)
        winner.commit()
        thread.join(timeout=30)

    # The loser re-read the row after the lock was released and found it running.
    assert outcome == [False]
    with db.connect() as connection:
        after = row(connection, run_id)
    assert (after["state"], after["worker"]) == ("running", "w1")


def test_many_concurrent_workers_start_a_run_once(db: Engine) -> None:
    with db.begin() as connection:
        run_id = add_run(connection, S.ENQUEUED)
    barrier = threading.Barrier(8)

    def start(worker: str) -> bool:
        with db.connect() as connection:
            barrier.wait(timeout=30)
            moved = transition(connection, run_id, S.RUNNING, now=NOW, worker=worker)
            connection.commit()
            return moved

    threads = [_in_thread(lambda i=i: start(f"w{i}")) for i in range(8)]
    for thread, _ in threads:
        thread.join(timeout=30)
    outcomes = [result for _, outcome in threads for result in outcome]
    assert sorted(outcomes) == [False] * 7 + [True]


# --- planning an occurrence at most once -----------------------------------------------------


def plan(connection: Connection, schedule_id: uuid.UUID, planned_at: datetime) -> list[Any]:
    statement = (
        pg_insert(runs)
        .values(schedule_id=schedule_id, planned_at=planned_at, due_at=planned_at, task="t")
        .on_conflict_do_nothing(index_elements=["schedule_id", "planned_at"])
        .returning(runs.c.id)
    )
    return list(connection.execute(statement).scalars())


def test_an_occurrence_is_planned_at_most_once(db: Engine) -> None:
    with db.begin() as connection:
        schedule_id = add_schedule(connection)
        first = plan(connection, schedule_id, T0)
        again = plan(connection, schedule_id, T0)
        other_instant = plan(connection, schedule_id, T0 + timedelta(microseconds=1))
        count = connection.execute(select(runs.c.id).where(runs.c.schedule_id == schedule_id))
        assert (len(first), again, len(other_instant), len(count.all())) == (1, [], 1, 2)


def test_a_plain_second_insert_of_an_occurrence_is_refused(db: Engine) -> None:
    with db.begin() as connection:
        schedule_id = add_schedule(connection)
        add_run(connection, S.SUCCEEDED, schedule_id=schedule_id)
    with (
        pytest.raises(IntegrityError, match="uq_runs_schedule_id_planned_at"),
        db.begin() as connection,
    ):
        add_run(connection, S.PLANNED, schedule_id=schedule_id)


def test_the_same_instant_in_another_zone_is_the_same_occurrence(db: Engine) -> None:
    with db.begin() as connection:
        schedule_id = add_schedule(connection)
        plan(connection, schedule_id, T0)
        assert plan(connection, schedule_id, T0.astimezone(ZoneInfo("Europe/Berlin"))) == []


def test_two_replicas_planning_the_same_occurrence_insert_it_once(db: Engine) -> None:
    with db.begin() as connection:
        schedule_id = add_schedule(connection)
    second_name = f"replica-{uuid.uuid4().hex[:8]}"

    with db.connect() as first:
        assert len(plan(first, schedule_id, T0)) == 1  # not committed yet

        def plan_again() -> bool:
            with db.connect() as second:
                second.execute(
                    text("SELECT set_config('application_name', :n, false)"), {"n": second_name}
                )
                inserted = plan(second, schedule_id, T0)
                second.commit()
                return bool(inserted)

        thread, outcome = _in_thread(plan_again)
        _wait_until_blocked(db, second_name, thread)  # on the unique index, until `first` decides
        first.commit()
        thread.join(timeout=30)

    assert outcome == [False]
