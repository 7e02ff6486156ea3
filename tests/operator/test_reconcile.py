"""Create, edit, suspend and delete Schedules: rows, status and the finalizer."""

from __future__ import annotations

import asyncio
import uuid

from beatkeeper_operator.reconcile import TRIGGER_ANNOTATION as TRIGGER
from emulator import SCHEDULES
from harness import (
    create,
    current,
    delete,
    events,
    eventually,
    manifest,
    merge_patch,
    ready,
    ready_becomes,
)
from sqlalchemy import Engine, select

from beatkeeper.policy import parse_policy
from beatkeeper.store.models import runs, schedules


def row_of(db: Engine, uid: str):  # type: ignore[no-untyped-def]
    with db.connect() as connection:
        return connection.execute(select(schedules).where(schedules.c.id == uuid.UUID(uid))).first()


async def test_created_schedule_gets_a_row_and_ready_status(cluster, start_operator, db):
    await start_operator()
    created = await create(cluster, manifest("nightly"))
    uid = created["metadata"]["uid"]

    condition = await ready_becomes(cluster, "team-a", "nightly", status="True")
    row = row_of(db, uid)
    assert row is not None
    assert row.task == "billing.tasks.charge"
    assert row.deleted_at is None
    status = current(cluster, "team-a", "nightly")["status"]
    assert condition["reason"] == "Scheduled"
    assert condition["observedGeneration"] == 1
    assert status["observedGeneration"] == 1
    assert condition["lastTransitionTime"]
    assert status["trigger"] == row.trigger
    assert len(status["nextRunTimes"]) == 3
    meta = current(cluster, "team-a", "nightly")["metadata"]
    assert meta["finalizers"] == ["beatkeeper.io/finalizer"]
    assert all(not key.startswith("kopf.") for key in meta.get("annotations", {}))
    assert "kopf" not in status


async def test_edit_replans_and_observed_generation_follows(cluster, start_operator, db):
    await start_operator()
    created = await create(cluster, manifest("edit-me"))
    await eventually(lambda: ready(cluster, "team-a", "edit-me")["reason"] == "Scheduled")
    await merge_patch(cluster, "team-a", "edit-me", {"spec": {"cron": "0 3 * * *"}})

    await eventually(
        lambda: current(cluster, "team-a", "edit-me")["status"].get("observedGeneration") == 2
    )
    row = row_of(db, created["metadata"]["uid"])
    assert row.spec["cron"] == "0 3 * * *"
    assert row.generation == 2
    assert ready(cluster, "team-a", "edit-me")["observedGeneration"] == 2


async def test_suspend_and_resume(cluster, start_operator, db):
    await start_operator()
    created = await create(cluster, manifest("pausable"))
    await eventually(lambda: ready(cluster, "team-a", "pausable")["reason"] == "Scheduled")
    await merge_patch(cluster, "team-a", "pausable", {"spec": {"suspend": True}})
    await eventually(lambda: ready(cluster, "team-a", "pausable")["reason"] == "Suspended")
    assert row_of(db, created["metadata"]["uid"]).suspended
    assert not current(cluster, "team-a", "pausable")["status"].get("nextRunTimes")
    await merge_patch(cluster, "team-a", "pausable", {"spec": {"suspend": False}})
    await eventually(lambda: ready(cluster, "team-a", "pausable")["reason"] == "Scheduled")
    assert not row_of(db, created["metadata"]["uid"]).suspended


async def test_delete_goes_through_the_finalizer_and_keeps_history(cluster, start_operator, db):
    await start_operator()
    created = await create(cluster, manifest("doomed"))
    uid = created["metadata"]["uid"]
    await eventually(lambda: ready(cluster, "team-a", "doomed")["reason"] == "Scheduled")
    await delete(cluster, "team-a", "doomed")

    await eventually(lambda: row_of(db, uid).deleted_at is not None)
    await eventually(lambda: cluster.objects[SCHEDULES, "team-a", "doomed"].deleted)
    assert row_of(db, uid) is not None  # kept as history


async def test_invalid_spec_is_reported_and_plans_nothing(cluster, start_operator, db):
    await start_operator()
    created = await create(cluster, manifest("broken", cron="61 * * * *"))
    condition = await eventually(lambda: ready(cluster, "team-a", "broken"))
    assert condition["status"] == "False"
    assert condition["reason"] == "InvalidSpec"
    assert "spec.cron" in condition["message"]
    assert row_of(db, created["metadata"]["uid"]) is None
    warning = await eventually(lambda: events(cluster, "InvalidSpec"))
    assert warning[0]["type"] == "Warning"
    assert len(warning[0]["message"]) <= 1024


async def test_task_outside_the_namespace_policy_is_refused(cluster, start_operator, db):
    policy = parse_policy({"default": {"tasks": ["reports.*"]}})
    await start_operator(policy=policy)
    created = await create(cluster, manifest("sneaky"))
    condition = await eventually(lambda: ready(cluster, "team-a", "sneaky"))
    assert condition["status"] == "False"
    assert condition["reason"] == "TaskNotAllowed"
    assert row_of(db, created["metadata"]["uid"]) is None
    assert await eventually(lambda: events(cluster, "TaskNotAllowed"))


async def test_trigger_annotation_plans_one_run_per_token(cluster, start_operator, db):
    await start_operator()
    created = await create(cluster, manifest("manual"))
    uid = uuid.UUID(created["metadata"]["uid"])
    await eventually(lambda: ready(cluster, "team-a", "manual")["reason"] == "Scheduled")
    await merge_patch(cluster, "team-a", "manual", {"metadata": {"annotations": {TRIGGER: "t1"}}})

    def manual_runs() -> list:
        with db.connect() as connection:
            return list(
                connection.execute(
                    select(runs).where(runs.c.schedule_id == uid, runs.c.origin == "manual")
                )
            )

    await eventually(manual_runs)
    await merge_patch(cluster, "team-a", "manual", {"metadata": {"labels": {"touched": "yes"}}})
    await eventually(lambda: current(cluster, "team-a", "manual")["status"].get("lastRun"))
    assert len(manual_runs()) == 1


async def test_schedule_created_with_a_trigger_shows_its_run_in_its_first_status(
    cluster, start_operator, db
):
    await start_operator()
    body = manifest("eager")
    body["metadata"]["annotations"] = {TRIGGER: "at-birth"}
    await create(cluster, body)

    await eventually(lambda: current(cluster, "team-a", "eager")["status"].get("lastRun"))
    assert current(cluster, "team-a", "eager")["status"]["lastRun"]["state"] == "planned"
    await asyncio.sleep(1.0)  # several refresher polls: nothing was left for them to add
    assert cluster.counts["UPDATE:status"] == 1
