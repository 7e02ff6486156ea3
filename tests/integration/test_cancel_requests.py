"""Cancel requests in the store, and what Beat's ``Canceller`` does with them (no worker).

A run not started is cancelled at once; a running one gets one request; whoever records it
cancelled first wins; a run that finishes first keeps its outcome; a run whose worker never
says it stopped is recorded cancelled at the deadline; a retry is never run.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from beatkeeper_worker import revoked
from beatkeeper_worker.app import make_app
from beatkeeper_worker.cancelling import DEADLINE, RESEND, Canceller
from celery import Celery
from sqlalchemy import Engine, insert, select

from beatkeeper.settings import Settings
from beatkeeper.spec import validate_manifest
from beatkeeper.states import RunState
from beatkeeper.store import cancellations, lookups, planning
from beatkeeper.store.models import cancel_requests, run_counts, runs
from beatkeeper.store.runs import transition
from beatkeeper.store.schedules import apply_schedule

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
S = RunState
Asked = cancellations.Asked
OWNER = "worker@host (pid 1, session 0123456789ab)"


@pytest.fixture(scope="module")
def app(settings_with_broker: Settings) -> Celery:
    return make_app(settings_with_broker)


def add_run(db: Engine, state: RunState, *, max_attempts: int = 1) -> uuid.UUID:
    document = {
        "apiVersion": "beatkeeper.io/v1alpha1",
        "kind": "Schedule",
        "metadata": {"name": "nightly", "namespace": "billing"},
        "spec": {"task": "billing.invoice", "cron": "0 2 * * *"},
    }
    with db.begin() as connection:
        applied = apply_schedule(connection, validate_manifest(document, now=NOW).manifest, now=NOW)
        run_id: uuid.UUID = connection.execute(
            insert(runs)
            .values(
                schedule_id=applied.id,
                planned_at=NOW - timedelta(minutes=uuid.uuid4().int % 1_000_000),
                due_at=NOW,
                task="billing.invoice",
                state=state.value,
                worker=OWNER if state is S.RUNNING else None,
                max_attempts=max_attempts,
            )
            .returning(runs.c.id)
        ).scalar_one()
    return run_id


def ask(db: Engine, run_id: uuid.UUID, *, at: datetime = NOW) -> cancellations.Cancel:
    with db.begin() as connection:
        return cancellations.request(connection, run_id, reason="cancelled on request (t)", now=at)


def row(db: Engine, run_id: uuid.UUID) -> Any:
    with db.connect() as connection:
        return connection.execute(select(runs).where(runs.c.id == run_id)).one()


def request_of(db: Engine, run_id: uuid.UUID) -> Any:
    with db.connect() as connection:
        query = select(cancel_requests).where(cancel_requests.c.run_id == run_id)
        return connection.execute(query).one()


def cancelled_count(db: Engine) -> int:
    query = select(run_counts.c.total).where(run_counts.c.state == "cancelled")
    with db.connect() as connection:
        return int(connection.execute(query).scalar() or 0)


def act(db: Engine, app: Celery, at: datetime, canceller: Canceller | None = None) -> int:
    with db.connect() as connection:
        return (canceller or Canceller(app)).act(connection, at)


@pytest.mark.parametrize("state", [S.PLANNED, S.ENQUEUED, S.RETRYING])
def test_a_run_not_started_is_cancelled_at_once(db: Engine, state: RunState) -> None:
    run_id = add_run(db, state)
    assert ask(db, run_id).asked is Asked.CANCELLED
    assert ask(db, run_id).asked is Asked.ALREADY_CANCELLED
    assert (row(db, run_id).state, row(db, run_id).error) == (
        "cancelled",
        "cancelled on request (t)",
    )


@pytest.mark.parametrize("state", [S.SUCCEEDED, S.FAILED, S.DEAD, S.MISSED])
def test_a_finished_run_is_refused(db: Engine, state: RunState) -> None:
    run_id = add_run(db, state)
    with pytest.raises(lookups.RefusedError, match="has finished"):
        ask(db, run_id)
    assert row(db, run_id).state == state


def test_an_unknown_run_is_not_found(db: Engine) -> None:
    with pytest.raises(lookups.NotFoundError):
        ask(db, uuid.uuid4())


def test_a_running_run_gets_one_request_and_keeps_running(db: Engine) -> None:
    run_id = add_run(db, S.RUNNING)
    first = ask(db, run_id)
    assert (first.asked, first.worker) == (Asked.REQUESTED, OWNER)
    again = ask(db, run_id, at=NOW + timedelta(seconds=5))
    assert (again.asked, again.requested_at, again.reason) == (
        Asked.ALREADY_REQUESTED,
        NOW,
        "cancelled on request (t)",
    )
    assert row(db, run_id).state == "running"
    with db.connect() as connection:
        assert planning.wake_times(connection, now=NOW).cancel_check == NOW


def test_the_first_to_record_it_cancelled_wins(db: Engine) -> None:
    run_id = add_run(db, S.RUNNING)
    ask(db, run_id)
    with db.begin() as connection:
        assert cancellations.cancel_requested(connection, run_id, now=NOW, how="stopped on a")
        assert not cancellations.cancel_requested(connection, run_id, now=NOW, how="stopped on b")
    assert row(db, run_id).error == "cancelled on request (t): stopped on a"
    assert request_of(db, run_id).settled_at == NOW
    assert cancelled_count(db) == 1
    assert ask(db, run_id).asked is Asked.ALREADY_REQUESTED  # the same annotation, seen again
    with db.connect() as connection:
        assert planning.wake_times(connection, now=NOW).cancel_check is None


def test_replicas_each_take_their_own_requests(db: Engine) -> None:
    run_id = add_run(db, S.RUNNING)
    ask(db, run_id)
    with db.connect() as first, db.connect() as second, first.begin(), second.begin():
        assert [r.run_id for r in cancellations.claim_open(first, now=NOW, limit=10)] == [run_id]
        assert cancellations.claim_open(second, now=NOW, limit=10) == []


def test_beat_revokes_then_records_it_cancelled_at_the_deadline(db: Engine, app: Celery) -> None:
    run_id = add_run(db, S.RUNNING)  # its worker is gone: nobody will say it stopped
    ask(db, run_id)
    canceller = Canceller(app)
    assert act(db, app, NOW, canceller) == 0
    assert (request_of(db, run_id).revoked_at, request_of(db, run_id).check_at) == (
        NOW,
        NOW + RESEND,
    )
    assert act(db, app, NOW + RESEND / 2, canceller) == 0  # not due: nothing claimed
    assert act(db, app, NOW + RESEND, canceller) == 0  # sent again, the deadline unchanged
    assert request_of(db, run_id).revoked_at == NOW
    assert row(db, run_id).state == "running"

    assert act(db, app, NOW + DEADLINE, canceller) == 1
    cancelled = row(db, run_id)
    assert cancelled.state == "cancelled"
    assert cancelled.error.startswith("cancelled on request (t): no worker reported it stopped")
    assert act(db, app, NOW + 2 * DEADLINE, canceller) == 0
    assert cancelled_count(db) == 1


def test_a_run_that_finishes_first_keeps_its_outcome(db: Engine, app: Celery) -> None:
    run_id = add_run(db, S.RUNNING)
    ask(db, run_id)
    with db.begin() as connection:
        assert transition(connection, run_id, S.SUCCEEDED, now=NOW, result="42")
    assert act(db, app, NOW + DEADLINE) == 0
    assert (row(db, run_id).state, row(db, run_id).result) == ("succeeded", "42")
    assert request_of(db, run_id).settled_at is not None
    assert cancelled_count(db) == 0


def test_a_retry_after_a_failure_is_not_run(db: Engine, app: Celery) -> None:
    run_id = add_run(db, S.RUNNING, max_attempts=3)
    ask(db, run_id)
    with db.begin() as connection:  # failed some other way than through run tracking
        transition(connection, run_id, S.FAILED, now=NOW, error="WorkerLost")
        transition(connection, run_id, S.RETRYING, now=NOW, due_at=NOW + timedelta(hours=1))
    assert act(db, app, NOW) == 1
    assert row(db, run_id).state == "cancelled"
    assert row(db, run_id).error == "cancelled on request (t): not run again"


def test_a_failure_while_the_cancel_is_pending_is_cancelled_not_retried(db: Engine) -> None:
    run_id = add_run(db, S.RUNNING, max_attempts=3)
    ask(db, run_id)
    with db.begin() as connection:
        assert revoked.failed_instead(connection, run_id, "RuntimeError: boom", now=NOW)
    assert row(db, run_id).state == "cancelled"
    assert row(db, run_id).error == (
        "cancelled on request (t): the task ended with RuntimeError: boom"
    )
    other = add_run(db, S.RUNNING, max_attempts=3)
    with db.begin() as connection:  # no cancel asked: an ordinary failure
        assert not revoked.failed_instead(connection, other, "RuntimeError: boom", now=NOW)
