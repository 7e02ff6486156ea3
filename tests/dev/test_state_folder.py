"""What a `beatkeeper dev` state folder holds: its lock, and the schedules it owns.

The folder sync runs against the test session's PostgreSQL, as the stack runs it: one
schedule made with `beatkeeper apply`'s reconcile beside the folder's own.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from beatkeeper.dev import lock, servers, stack, sync
from beatkeeper.settings import Settings
from beatkeeper.spec import validate_manifest
from beatkeeper.store.models import schedules
from beatkeeper.store.schedules import apply_schedule

MANIFEST = """\
apiVersion: beatkeeper.io/v1alpha1
kind: Schedule
metadata: {{name: {name}, namespace: default}}
spec: {{task: examples.events.complete_ended, interval: {interval}}}
"""


def write(folder: Path, name: str, interval: str = "5m") -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(MANIFEST.format(name=name, interval=interval))
    return path


def live(engine: Engine) -> set[str]:
    with engine.connect() as db:
        rows = db.execute(select(schedules.c.name).where(schedules.c.deleted_at.is_(None)))
        return {row.name for row in rows}


def test_a_second_holder_of_the_state_folder_is_refused_with_how_to_run_a_second(
    tmp_path: Path,
) -> None:
    with lock.hold(tmp_path), pytest.raises(lock.StateInUseError) as refused, lock.hold(tmp_path):
        pytest.fail("a second holder got the lock")
    message = str(refused.value)
    assert "in use by another beatkeeper dev" in message
    assert "--state-dir" in message
    assert "--flower-port" in message
    assert "\n" not in message
    with lock.hold(tmp_path):  # released when the first holder ended
        pass


def test_schedules_dev_did_not_apply_are_never_deleted(db: Engine, tmp_path: Path) -> None:
    manifests, state = tmp_path / "manifests", tmp_path / "state"
    manifests.mkdir()
    write(manifests, "mine")
    applied_by_hand = validate_manifest(
        {
            "apiVersion": "beatkeeper.io/v1alpha1",
            "kind": "Schedule",
            "metadata": {"name": "by-hand", "namespace": "default"},
            "spec": {"task": "examples.events.complete_ended", "interval": "1h"},
        },
        now=datetime.now(UTC),
    ).manifest
    with db.begin() as connection:
        apply_schedule(connection, applied_by_hand, now=datetime.now(UTC))

    outcome = sync.Folder([manifests], state).sync(db)

    assert [a.name for a in outcome.applied] == ["mine"]
    assert outcome.deleted == []
    assert live(db) == {"mine", "by-hand"}


def test_an_owned_schedule_is_deleted_when_its_manifest_is_gone(db: Engine, tmp_path: Path) -> None:
    manifests, state = tmp_path / "manifests", tmp_path / "state"
    manifests.mkdir()
    gone = write(manifests, "gone")
    write(manifests, "stays")
    sync.Folder([manifests], state).sync(db)

    gone.unlink()
    outcome = sync.Folder([manifests], state).sync(db)  # a restart: ownership was recorded

    assert outcome.deleted == [(("default", "gone"), str(gone.resolve()))]
    assert live(db) == {"stays"}


def test_an_owned_schedule_from_a_folder_not_loaded_this_time_is_kept(
    db: Engine, tmp_path: Path
) -> None:
    first, second, state = tmp_path / "first", tmp_path / "second", tmp_path / "state"
    first.mkdir()
    second.mkdir()
    kept = write(first, "from-first")
    write(second, "from-second")
    sync.Folder([first], state).sync(db)

    outcome = sync.Folder([second], state).sync(db)

    assert outcome.deleted == []
    assert outcome.elsewhere == [(("default", "from-first"), str(kept.resolve()))]
    assert live(db) == {"from-first", "from-second"}


def test_a_fixed_manifest_is_reported_fixed(db: Engine, tmp_path: Path) -> None:
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    path = write(manifests, "flaky")
    folder = sync.Folder([manifests], tmp_path / "state")
    folder.sync(db)
    write(manifests, "flaky", interval="soon")
    assert folder.sync(db).problems

    write(manifests, "flaky")  # back to the version in force: nothing to apply
    outcome = folder.sync(db)

    assert outcome.fixed == [str(path)]
    assert outcome.applied == []


@pytest.mark.filterwarnings("ignore:XDG_RUNTIME_DIR is not set")  # pgserver's, at import
def test_an_embedded_postgresql_that_does_not_start_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pgserver  # noqa: PLC0415 - only this test needs it

    def refuse(*_: object, **__: object) -> None:
        raise AssertionError  # as pgserver reports a postmaster that is not ready

    monkeypatch.setattr(pgserver, "get_server", refuse)
    with pytest.raises(servers.ServerStartError) as refused:  # noqa: SIM117
        with servers.embedded(tmp_path, database=True, broker=False):
            pytest.fail("started")
    assert str(refused.value) == (
        f"the embedded PostgreSQL in {tmp_path / 'postgres'} did not start (AssertionError): "
        f"see {tmp_path / 'postgres' / 'log'}"
    )


def test_dev_hands_its_beat_and_worker_the_policy_file_by_its_full_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "policy.yaml").write_text('default: {tasks: ["examples.*"]}\n')
    settings = Settings.from_env({"BEATKEEPER_POLICY_FILE": "policy.yaml"})
    env = stack._child_env(settings, "postgresql://db/x", "redis://broker/0")
    assert env["BEATKEEPER_POLICY_FILE"] == str(tmp_path / "policy.yaml")
    assert not stack._policy(settings).allows(namespace="default", task="beatkeeper.noop")


def test_dev_with_an_unreadable_policy_file_is_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    settings = Settings.from_env({"BEATKEEPER_POLICY_FILE": str(missing)})
    with pytest.raises(stack.StackError, match=f"cannot read the policy file {missing}"):
        stack._policy(settings)
