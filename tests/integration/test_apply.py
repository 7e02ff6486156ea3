"""`apply_schedule` / `delete_schedule`: the one reconcile, against a real PostgreSQL."""

from __future__ import annotations

import copy
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, insert, select

from beatkeeper.dev.sync import Folder
from beatkeeper.policy import load_policy
from beatkeeper.problems import SpecError
from beatkeeper.spec import ScheduleManifest, validate_manifest
from beatkeeper.states import RunState
from beatkeeper.store.models import runs, schedules
from beatkeeper.store.schedules import RefusedByDatabaseError, apply_schedule, delete_schedule

NOW = datetime(2026, 11, 22, 12, 0, 30, tzinfo=UTC)
UID = "0d9e8a52-5f3c-4a51-8f0e-2b1f5d6c7a10"


def manifest(
    uid: str | None = UID, *, namespace: str = "chores", name: str = "reminders", **spec: Any
) -> ScheduleManifest:
    document: dict[str, Any] = {
        "apiVersion": "beatkeeper.io/v1alpha1",
        "kind": "Schedule",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"task": "chores.remind", "cron": "*/15 * * * *", **spec},
    }
    if uid:
        document["metadata"]["uid"] = uid
    return validate_manifest(copy.deepcopy(document), now=NOW).manifest


def row(engine: Engine, uid: str | uuid.UUID = UID) -> Any:
    with engine.connect() as db:
        return db.execute(select(schedules).where(schedules.c.id == uuid.UUID(str(uid)))).one()


def apply(engine: Engine, m: ScheduleManifest, now: datetime = NOW) -> Any:
    with engine.begin() as db:
        return apply_schedule(db, m, now=now)


def test_a_value_postgresql_refuses_is_a_spec_error_and_changes_nothing(db: Engine) -> None:
    valid = manifest(name="refused", args=["ok"])
    # Validation refuses a NUL; past it, PostgreSQL's JSONB refuses it too.
    refused = valid.model_copy(update={"spec": valid.spec.model_copy(update={"args": ["a\0b"]})})
    with pytest.raises(RefusedByDatabaseError, match=r"^the database refused the spec: "):
        apply(db, refused)
    with db.connect() as connection:
        found = connection.execute(select(schedules.c.id).where(schedules.c.name == "refused"))
        assert found.first() is None


def test_create_plans_next_occurrence_after_now(db: Engine) -> None:
    result = apply(db, manifest())
    assert result.action == "created"
    stored = row(db)
    assert stored.next_run_at == datetime(2026, 11, 22, 12, 15, tzinfo=UTC)
    assert stored.next_due_at == stored.next_run_at
    assert stored.task == "chores.remind"
    assert stored.spec["cron"] == "*/15 * * * *"
    assert stored.spec["timeZone"] == "UTC"
    assert stored.generation == 1
    assert stored.trigger


def test_reapplying_same_spec_changes_nothing(db: Engine) -> None:
    apply(db, manifest())
    before = row(db)
    result = apply(db, manifest(), now=NOW + timedelta(hours=5))
    assert result.action == "unchanged"
    assert row(db) == before


def test_edit_replans_from_the_edit_without_catch_up(db: Engine) -> None:
    apply(db, manifest())
    later = NOW + timedelta(hours=3, minutes=7)
    result = apply(db, manifest(cron="0 * * * *"), now=later)
    assert result.action == "updated"
    stored = row(db)
    # The old next_run_at (12:15) is long past; the edit plans strictly after the edit.
    assert stored.next_run_at == datetime(2026, 11, 22, 16, 0, tzinfo=UTC)
    assert stored.generation == 2


def test_jitter_moves_due_time_deterministically(db: Engine) -> None:
    apply(db, manifest(jitter="10m"))
    stored = row(db)
    delay = stored.next_due_at - stored.next_run_at
    assert timedelta(0) <= delay <= timedelta(minutes=10)
    with db.begin() as conn:
        conn.execute(schedules.delete())
    apply(db, manifest(jitter="10m"))
    assert row(db).next_due_at - row(db).next_run_at == delay


def test_suspend_is_stored_and_edit_lifts_a_failure_pause(db: Engine) -> None:
    apply(db, manifest())
    with db.begin() as conn:
        conn.execute(
            schedules.update().values(
                suspended=True, paused_reason="5 failures", consecutive_failures=5
            )
        )
    apply(db, manifest(queue="chores"), now=NOW + timedelta(minutes=1))
    stored = row(db)
    assert (stored.suspended, stored.paused_reason, stored.consecutive_failures) == (False, None, 0)
    apply(db, manifest(queue="chores", suspend=True), now=NOW + timedelta(minutes=2))
    assert row(db).suspended is True


def test_manifest_without_uid_keeps_its_id_across_applies(db: Engine) -> None:
    first = apply(db, manifest(uid=None))
    second = apply(db, manifest(uid=None, queue="q"))
    assert first.id == second.id
    assert second.action == "updated"


def test_ids_of_manifests_without_uid_are_not_derived_from_their_names(db: Engine) -> None:
    # A name-derived id would let anyone compute another namespace's schedule id.
    legacy = uuid.uuid5(uuid.UUID("5b0c6f4e-2d7c-4c83-9a51-0a9f3f1f6e21"), "chores/reminders")
    first = apply(db, manifest(uid=None))
    assert first.id != legacy
    assert first.id.version == 8  # random, marked as applied without a cluster
    with db.begin() as conn:
        delete_schedule(conn, namespace="chores", name="reminders", now=NOW)
    elsewhere = apply(db, manifest(uid=None, namespace="other"))
    assert elsewhere.id not in {first.id, legacy}


def test_a_deleted_schedule_from_a_cluster_is_not_restored_by_an_apply_without_uid(
    db: Engine,
) -> None:
    apply(db, manifest())  # a Kubernetes uid
    with db.begin() as conn:
        delete_schedule(conn, uid=uuid.UUID(UID), now=NOW)
    result = apply(db, manifest(uid=None))
    assert (result.action, result.id.version) == ("created", 8)
    assert row(db).deleted_at == NOW


def test_uid_of_another_schedule_is_refused_and_moves_nothing(db: Engine) -> None:
    apply(db, manifest())
    with db.begin() as conn:
        conn.execute(
            insert(runs).values(
                schedule_id=uuid.UUID(UID), planned_at=NOW, due_at=NOW, task="chores.remind"
            )
        )
    copied = manifest(namespace="attacker", name="copy", task="evil.task")
    with pytest.raises(SpecError) as refused:
        apply(db, copied)
    assert str(refused.value) == (
        f"metadata.uid: {UID} belongs to Schedule chores/reminders, not attacker/copy: "
        "remove metadata.uid (copied from another Schedule?)"
    )
    stored = row(db)
    assert (stored.namespace, stored.name, stored.task) == ("chores", "reminders", "chores.remind")
    with db.connect() as conn:
        assert conn.execute(select(runs.c.state)).scalars().all() == ["planned"]


def test_uid_of_a_deleted_schedule_elsewhere_is_refused_too(db: Engine) -> None:
    apply(db, manifest())
    with db.begin() as conn:
        delete_schedule(conn, uid=uuid.UUID(UID), now=NOW)
    with pytest.raises(SpecError, match="belongs to Schedule chores/reminders"):
        apply(db, manifest(name="renamed"))


def test_manifest_without_uid_keeps_id_of_live_schedule_with_that_name(db: Engine) -> None:
    apply(db, manifest())
    result = apply(db, manifest(uid=None, queue="q"))
    assert str(result.id) == UID
    assert result.action == "updated"


def test_delete_cancels_pending_runs_and_keeps_history(db: Engine) -> None:
    apply(db, manifest())
    states = [RunState.PLANNED, RunState.RETRYING, RunState.RUNNING, RunState.SUCCEEDED]
    with db.begin() as conn:
        for index, state in enumerate(states):
            planned = NOW - timedelta(minutes=15 * index)
            conn.execute(
                insert(runs).values(
                    schedule_id=uuid.UUID(UID),
                    planned_at=planned,
                    due_at=planned,
                    state=state.value,
                    task="chores.remind",
                )
            )
    with db.begin() as conn:
        assert delete_schedule(conn, uid=uuid.UUID(UID), now=NOW) is True
    stored = row(db)
    assert stored.deleted_at == NOW
    assert stored.next_run_at is None
    with db.connect() as conn:
        found = sorted(conn.execute(select(runs.c.state)).scalars())
    assert found == ["cancelled", "cancelled", "running", "succeeded"]
    with db.begin() as conn:
        assert delete_schedule(conn, uid=uuid.UUID(UID), now=NOW) is False


def test_delete_by_name(db: Engine) -> None:
    apply(db, manifest())
    with db.begin() as conn:
        assert delete_schedule(conn, namespace="chores", name="reminders", now=NOW)
        assert not delete_schedule(conn, namespace="chores", name="other", now=NOW)


def test_recreate_under_same_name_with_new_uid_is_a_new_schedule(db: Engine) -> None:
    apply(db, manifest())
    other = "9f1c2b3a-0000-4000-8000-000000000001"
    result = apply(db, manifest(uid=other))
    assert result.action == "replaced"
    assert row(db).deleted_at == NOW
    assert row(db, other).deleted_at is None


def test_reapply_after_delete_restores_the_row(db: Engine) -> None:
    first = apply(db, manifest(uid=None))
    with db.begin() as conn:
        delete_schedule(conn, namespace="chores", name="reminders", now=NOW)
    result = apply(db, manifest(uid=None), now=NOW + timedelta(hours=1))
    assert (result.action, result.id) == ("restored", first.id)
    stored = row(db, first.id)
    assert stored.deleted_at is None
    assert stored.next_run_at == datetime(2026, 11, 22, 13, 15, tzinfo=UTC)


def test_finished_schedule_has_no_next_run(db: Engine) -> None:
    result = apply(db, manifest(cron=None, at="2026-11-22T12:00:00Z"))
    assert result.next_run_at is None
    assert row(db).next_due_at is None


@pytest.mark.parametrize("zone", ["Europe/London", "Asia/Kolkata"])
def test_zone_is_stored(db: Engine, zone: str) -> None:
    apply(db, manifest(timeZone=zone))
    assert row(db).zone == zone


def test_generation_from_the_cluster_is_stored_as_given(db: Engine) -> None:
    document = manifest().model_dump(by_alias=True, mode="json")
    document["metadata"]["generation"] = 7
    document["spec"]["queue"] = "q"
    apply(db, validate_manifest(document, now=NOW).manifest)
    assert row(db).generation == 7


def test_dev_sync_reports_a_copied_uid_as_a_problem_and_applies_the_rest(
    db: Engine, tmp_path: Path
) -> None:
    apply(db, manifest())
    (tmp_path / "copied.yaml").write_text(
        "apiVersion: beatkeeper.io/v1alpha1\nkind: Schedule\n"
        f"metadata: {{name: copy, namespace: chores, uid: {UID}}}\n"
        "spec: {task: chores.remind, interval: 1h}\n"
    )
    (tmp_path / "fine.yaml").write_text(
        "apiVersion: beatkeeper.io/v1alpha1\nkind: Schedule\n"
        "metadata: {name: fine, namespace: chores}\nspec: {task: chores.remind, interval: 1h}\n"
    )
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    for written in tmp_path.glob("*.yaml"):
        written.rename(manifests / written.name)
    outcome = Folder([manifests], tmp_path / "state").sync(db)
    assert [(Path(source).name, str(problem)) for source, problem in outcome.problems] == [
        (
            "copied.yaml",
            f"metadata.uid: {UID} belongs to Schedule chores/reminders, not chores/copy: "
            "remove metadata.uid (copied from another Schedule?)",
        )
    ]
    assert [applied.name for applied in outcome.applied] == ["fine"]
    assert row(db).name == "reminders"


def test_dev_sync_applies_nothing_of_a_schedule_the_policy_forbids(
    db: Engine, tmp_path: Path
) -> None:
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text('default: {tasks: ["chores.*"]}\n')
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "fine.yaml").write_text(
        "apiVersion: beatkeeper.io/v1alpha1\nkind: Schedule\n"
        "metadata: {name: fine, namespace: chores}\nspec: {task: chores.remind, interval: 1h}\n"
    )
    (manifests / "noop.yaml").write_text(
        "apiVersion: beatkeeper.io/v1alpha1\nkind: Schedule\n"
        "metadata: {name: noop, namespace: chores}\nspec: {task: beatkeeper.noop, interval: 1h}\n"
    )
    policy = load_policy(str(policy_file))
    outcome = Folder([manifests], tmp_path / "state", policy=policy).sync(db)
    assert [(Path(source).name, str(problem)) for source, problem in outcome.problems] == [
        (
            "noop.yaml",
            f"task beatkeeper.noop is not allowed in namespace chores by the tenancy policy "
            f"({policy_file}) (allowed: chores.*)",
        )
    ]
    assert [applied.name for applied in outcome.applied] == ["fine"]
    with db.connect() as conn:
        names = conn.execute(select(schedules.c.name).where(schedules.c.deleted_at.is_(None)))
        assert {name for (name,) in names} == {"fine"}
