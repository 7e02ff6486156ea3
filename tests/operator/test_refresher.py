"""The status refresher follows the runs table and leaves unchanged Schedules alone."""

from __future__ import annotations

import asyncio
import threading
import uuid
from datetime import UTC, datetime, timedelta

from beatkeeper_operator import reconcile
from harness import create, current, events, eventually, manifest, ready, ready_becomes
from sqlalchemy import Engine, update

from beatkeeper.policy import parse_policy
from beatkeeper.store.models import runs, schedules


def status_patches(cluster) -> int:  # type: ignore[no-untyped-def]
    return cluster.counts["UPDATE:status"]


def record_runs(db: Engine, schedule_id: uuid.UUID) -> dict[str, uuid.UUID]:
    """Two runs as a worker leaves them: one succeeded an hour ago, one running now."""
    now = datetime.now(UTC)
    earlier, latest = now - timedelta(hours=1), now - timedelta(seconds=30)
    ids = {"succeeded": uuid.uuid4(), "running": uuid.uuid4()}
    common = {"schedule_id": schedule_id, "task": "billing.tasks.charge", "updated_at": now}
    with db.begin() as connection:
        connection.execute(
            runs.insert(),
            [
                {
                    **common,
                    "id": ids["succeeded"],
                    "planned_at": earlier,
                    "due_at": earlier,
                    "state": "succeeded",
                    "started_at": earlier,
                    "finished_at": earlier + timedelta(seconds=2),
                    "result": "charged 3 invoices",
                },
                {
                    **common,
                    "id": ids["running"],
                    "planned_at": latest,
                    "due_at": latest,
                    "state": "running",
                    "started_at": latest,
                    "finished_at": None,
                    "result": None,
                },
            ],
        )
        connection.execute(
            update(schedules)
            .where(schedules.c.id == schedule_id)
            .values(last_scheduled_at=latest, updated_at=now)
        )
    return ids


async def test_status_follows_the_runs_table(cluster, start_operator, db):
    await start_operator()
    created = await create(cluster, manifest("busy"))
    uid = uuid.UUID(created["metadata"]["uid"])
    await eventually(lambda: ready(cluster, "team-a", "busy")["reason"] == "Scheduled")

    ids = record_runs(db, uid)
    status = await eventually(
        lambda: (
            current(cluster, "team-a", "busy")["status"].get("counts")
            and current(cluster, "team-a", "busy")["status"]
        )
    )
    assert status["counts"] == {"succeeded": 1}
    assert status["lastRun"]["id"] == str(ids["running"])
    assert status["lastRun"]["state"] == "running"
    assert [run["id"] for run in status["active"]] == [str(ids["running"])]
    assert status["lastScheduleTime"] == status["lastRun"]["plannedTime"]
    assert status["lastSuccessfulTime"]
    assert ready(cluster, "team-a", "busy")["reason"] == "Scheduled"


async def test_unchanged_schedules_get_no_status_patch(cluster, start_operator, db):
    await start_operator()
    busy = await create(cluster, manifest("busy"))
    await create(cluster, manifest("quiet"))
    for name in ("busy", "quiet"):
        await eventually(lambda name=name: ready(cluster, "team-a", name)["reason"] == "Scheduled")
    await asyncio.sleep(0.5)  # the refresher's first polls
    quiet_before = current(cluster, "team-a", "quiet")
    patches = status_patches(cluster)

    record_runs(db, uuid.UUID(busy["metadata"]["uid"]))
    await eventually(lambda: current(cluster, "team-a", "busy")["status"].get("counts"))
    await asyncio.sleep(1.0)  # several more polls, with the new runs inside their overlap

    assert status_patches(cluster) == patches + 1
    assert current(cluster, "team-a", "quiet") == quiet_before


async def test_a_dead_run_is_a_warning_event(cluster, start_operator, db):
    await start_operator()
    created = await create(cluster, manifest("fragile"))
    uid = uuid.UUID(created["metadata"]["uid"])
    await eventually(lambda: ready(cluster, "team-a", "fragile")["reason"] == "Scheduled")

    now = datetime.now(UTC)
    with db.begin() as connection:
        connection.execute(
            runs.insert().values(
                schedule_id=uid,
                task="billing.tasks.charge",
                planned_at=now,
                due_at=now,
                state="dead",
                attempt=3,
                max_attempts=3,
                finished_at=now,
                error="ValueError: card declined",
                updated_at=now,
            )
        )

    warning = await eventually(lambda: events(cluster, "RunDead"))
    assert warning[0]["type"] == "Warning"
    assert "card declined" in warning[0]["message"]
    assert warning[0]["involvedObject"]["uid"] == str(uid)


async def test_a_pause_after_failures_turns_ready_false_with_an_event(cluster, start_operator, db):
    await start_operator()
    created = await create(cluster, manifest("failing"))
    uid = uuid.UUID(created["metadata"]["uid"])
    await eventually(lambda: ready(cluster, "team-a", "failing")["reason"] == "Scheduled")

    with db.begin() as connection:  # what a worker does after the last allowed failure
        connection.execute(
            update(schedules)
            .where(schedules.c.id == uid)
            .values(
                suspended=True,
                paused_reason="3 consecutive runs failed",
                updated_at=datetime.now(UTC),
            )
        )

    condition = await ready_becomes(cluster, "team-a", "failing", reason="PausedAfterFailures")
    assert condition["status"] == "False"
    assert "3 consecutive runs failed" in condition["message"]
    warning = await eventually(lambda: events(cluster, "PausedAfterFailures"))
    assert "resume with kubectl beatkeeper resume" in warning[0]["message"]


async def test_slow_reconciles_do_not_hold_up_status_refreshes(
    cluster, start_operator, db, monkeypatch
):
    """Validation runs on its own threads: a burst of slow specs leaves the refresher free."""
    await start_operator()
    created = await create(cluster, manifest("watched"))
    uid = uuid.UUID(created["metadata"]["uid"])
    await eventually(lambda: ready(cluster, "team-a", "watched")["reason"] == "Scheduled")

    release, entered = threading.Event(), []

    def stuck(*_args, **_kwargs):  # type: ignore[no-untyped-def]
        entered.append(1)
        release.wait(60)
        raise RuntimeError("released")

    monkeypatch.setattr(reconcile, "reconcile", stuck)
    try:
        for index in range(10):  # more than the default thread pool has threads here
            await create(cluster, manifest(f"slow-{index}"))
        await eventually(lambda: len(entered) >= 4)
        record_runs(db, uid)
        status = await eventually(
            lambda: current(cluster, "team-a", "watched")["status"].get("counts")
        )
        assert status == {"succeeded": 1}
    finally:
        release.set()


async def test_a_schedule_refused_by_policy_still_shows_its_running_runs(
    cluster, start_operator, db
):
    first = await start_operator()
    created = await create(cluster, manifest("retiring"))
    uid = uuid.UUID(created["metadata"]["uid"])
    await eventually(lambda: ready(cluster, "team-a", "retiring")["reason"] == "Scheduled")
    now = datetime.now(UTC)
    run_id = uuid.uuid4()
    with db.begin() as connection:
        connection.execute(
            runs.insert().values(
                id=run_id,
                schedule_id=uid,
                task="billing.tasks.charge",
                planned_at=now,
                due_at=now,
                state="running",
                started_at=now,
                updated_at=now,
            )
        )
    await eventually(lambda: active_ids(cluster, "retiring") == [str(run_id)])
    await first.stop()

    # The policy tightened: the schedule is retired, but the run already started goes on.
    policy = parse_policy({"namespaces": {"team-a": {"tasks": ["reports.*"]}}})
    await start_operator(policy=policy)
    await ready_becomes(cluster, "team-a", "retiring", reason="TaskNotAllowed")
    await asyncio.sleep(0.6)  # several refresher polls
    assert active_ids(cluster, "retiring") == [str(run_id)]
    assert not current(cluster, "team-a", "retiring")["status"].get("nextRunTimes")

    with db.begin() as connection:
        finished = datetime.now(UTC)
        connection.execute(
            runs.update()
            .where(runs.c.id == run_id)
            .values(state="succeeded", finished_at=finished, updated_at=finished)
        )
    await eventually(lambda: active_ids(cluster, "retiring") == [], what="the run finished")
    assert current(cluster, "team-a", "retiring")["status"]["lastRun"]["state"] == "succeeded"


def active_ids(cluster, name: str) -> list[str]:  # type: ignore[no-untyped-def]
    status = current(cluster, "team-a", name).get("status", {})
    return [run["id"] for run in status.get("active", [])]


async def test_a_run_committed_with_a_time_before_the_last_poll_is_still_reported_once(
    cluster, start_operator, db
):
    await start_operator()
    created = await create(cluster, manifest("late-commit"))
    uid = uuid.UUID(created["metadata"]["uid"])
    await eventually(lambda: ready(cluster, "team-a", "late-commit")["reason"] == "Scheduled")
    await asyncio.sleep(0.5)  # polls have run since
    stamped = datetime.now(UTC) - timedelta(seconds=2)  # its writer's clock, before the polls
    with db.begin() as connection:
        connection.execute(
            runs.insert().values(
                schedule_id=uid,
                task="billing.tasks.charge",
                planned_at=stamped,
                due_at=stamped,
                state="missed",
                error="startingDeadline passed",
                updated_at=stamped,
            )
        )
    await eventually(lambda: events(cluster, "RunMissed"))
    await asyncio.sleep(1.0)  # several polls inside the overlap
    assert len(events(cluster, "RunMissed")) == 1
