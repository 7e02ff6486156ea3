"""`beatkeeper migrate`, `apply` and `delete` against a real PostgreSQL, as a user runs them."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, make_url, select, text

from beatkeeper.manifests import manifest_files, read_documents
from beatkeeper.settings import Settings
from beatkeeper.store import make_engine
from beatkeeper.store.models import schedules

EXAMPLES = Path(__file__).resolve().parents[2] / "manifests" / "examples"
GOOD = """\
apiVersion: beatkeeper.io/v1alpha1
kind: Schedule
metadata: {name: nightly, namespace: billing}
spec: {task: billing.nightly, cron: "0 2 * * *"}
"""


@pytest.fixture
def schema(database_url: str) -> Iterator[str]:
    """A schema of this test's own, empty until `beatkeeper migrate` fills it."""
    name = f"bk_cli_{secrets.token_hex(4)}"
    yield name
    engine = create_engine(database_url)
    with engine.begin() as db:
        db.execute(text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
    engine.dispose()


@pytest.fixture
def run(beatkeeper_cli, monkeypatch, database_url: str, schema: str):
    monkeypatch.setenv("BEATKEEPER_DATABASE_URL", database_url)
    monkeypatch.setenv("BEATKEEPER_DB_SCHEMA", schema)
    return beatkeeper_cli


def live_names(database_url: str, schema: str) -> set[str]:
    engine: Engine = make_engine(Settings(database_url=database_url, db_schema=schema))
    try:
        with engine.connect() as db:
            rows = db.execute(select(schedules.c.name).where(schedules.c.deleted_at.is_(None)))
            return {row.name for row in rows}
    finally:
        engine.dispose()


def test_apply_before_migrate_says_to_migrate(run, schema: str) -> None:
    result = run("apply", "-f", str(EXAMPLES))
    assert result.code == 1
    assert f"schema '{schema}'" in result.err
    assert "has no beatkeeper tables: run `beatkeeper migrate` first" in result.err


def test_migrate_then_apply_every_example_then_reapply_changes_nothing(
    run, database_url: str, schema: str
) -> None:
    assert run("migrate").code == 0
    first = run("apply", "-f", str(EXAMPLES))
    assert first.code == 0, first.err
    examples = sum(len(read_documents(path)) for path in manifest_files([EXAMPLES]))
    assert len(first.out.splitlines()) == examples
    assert all(" created (next run " in line for line in first.out.splitlines())
    second = run("apply", "-f", str(EXAMPLES))
    assert all(" unchanged (next run " in line for line in second.out.splitlines())
    assert len(live_names(database_url, schema)) == examples


def test_one_bad_manifest_applies_nothing(
    run, tmp_path: Path, database_url: str, schema: str
) -> None:
    assert run("migrate").code == 0
    (tmp_path / "good.yaml").write_text(GOOD)
    (tmp_path / "bad.yaml").write_text(GOOD.replace("nightly", "other").replace("0 2", "0 25"))
    result = run("apply", "-f", str(tmp_path))
    assert result.code == 1
    assert f"{tmp_path / 'bad.yaml'}: spec.cron: " in result.out
    assert "nothing applied" in result.err
    assert live_names(database_url, schema) == set()


def test_delete_by_name_and_by_file(run, tmp_path: Path, database_url: str, schema: str) -> None:
    assert run("migrate").code == 0
    path = tmp_path / "s.yaml"
    path.write_text(GOOD)
    assert run("apply", "-f", str(path)).code == 0
    assert run("delete", "billing/nightly").out == "billing/nightly deleted\n"
    missing = run("delete", "billing/nightly")
    assert (missing.code, missing.out) == (1, "")
    assert missing.err == "beatkeeper: error: no live schedule billing/nightly: nothing to delete\n"
    assert run("apply", "-f", str(path)).out.startswith("billing/nightly restored")
    assert run("delete", "-f", str(path)).out == "billing/nightly deleted\n"
    assert live_names(database_url, schema) == set()


def test_delete_needs_a_target(run) -> None:
    result = run("delete")
    assert result.code == 2
    assert "give -f FILE or NAMESPACE/NAME" in result.err


def test_migrate_wait_returns_once_current(run) -> None:
    assert run("migrate").code == 0
    result = run("migrate", "--wait", "--timeout", "5")
    assert result.code == 0
    assert "database at migration" in result.err


def test_migrate_wait_times_out_with_the_reason(run) -> None:
    result = run("migrate", "--wait", "--timeout", "1")
    assert result.code == 1
    assert "did not reach migration" in result.err
    assert "not migrated yet" in result.err


def test_migrate_wait_keeps_waiting_while_the_database_is_down(run, monkeypatch) -> None:
    monkeypatch.setenv("BEATKEEPER_DATABASE_URL", "postgresql://nobody:secret@127.0.0.1:9/x")
    result = run("migrate", "--wait", "--timeout", "1")
    assert result.code == 1
    assert "database not reachable yet" in result.err
    assert "secret" not in result.err
    assert "Traceback" not in result.err


def test_unreachable_database_is_one_line_with_the_password_masked(run, monkeypatch) -> None:
    monkeypatch.setenv("BEATKEEPER_DATABASE_URL", "postgresql://nobody:secret@127.0.0.1:9/x")
    result = run("apply", "-f", str(EXAMPLES))
    assert result.code == 1
    assert result.err.startswith("beatkeeper: error: cannot connect to PostgreSQL at ")
    assert "***" in result.err
    assert "secret" not in result.err


def test_a_statement_the_server_gives_up_on_is_one_line_and_applies_nothing(
    run, monkeypatch, database_url: str, schema: str
) -> None:
    assert run("migrate").code == 0
    # lock_timeout stands in for statement_timeout: both are the server giving up.
    impatient = make_url(database_url).update_query_dict({"options": "-c lock_timeout=200"})
    monkeypatch.setenv("BEATKEEPER_DATABASE_URL", impatient.render_as_string(False))
    engine = create_engine(database_url)
    try:
        with engine.connect() as locker:
            locker.execute(text(f'LOCK TABLE "{schema}".schedules IN ACCESS EXCLUSIVE MODE'))
            result = run("apply", "-f", str(EXAMPLES))
            locker.rollback()
    finally:
        engine.dispose()
    assert result.code == 1
    assert result.err.startswith("beatkeeper: error: a statement failed on PostgreSQL at ")
    assert result.err.rstrip().endswith("canceling statement due to lock timeout")
    assert "Traceback" not in result.err
    assert live_names(database_url, schema) == set()


def test_apply_of_a_copied_uid_is_one_line_and_applies_nothing(
    run, tmp_path: Path, database_url: str, schema: str
) -> None:
    uid = "0d9e8a52-5f3c-4a51-8f0e-2b1f5d6c7a10"
    original = tmp_path / "original.yaml"
    original.write_text(GOOD.replace("namespace: billing}", f"namespace: billing, uid: {uid}}}"))
    assert run("migrate").code == 0
    assert run("apply", "-f", str(original)).code == 0
    copied = tmp_path / "copied.yaml"
    copied.write_text(original.read_text().replace("name: nightly", "name: copy"))
    result = run("apply", "-f", str(copied))
    assert result.code == 1
    assert result.err.strip().splitlines() == [
        f"beatkeeper: error: {copied}: metadata.uid: {uid} belongs to Schedule "
        "billing/nightly, not billing/copy: remove metadata.uid (copied from another "
        "Schedule?); nothing applied"
    ]
    assert live_names(database_url, schema) == {"nightly"}


POLICY = 'namespaces:\n  billing: {tasks: ["billing.*"]}\n'


def test_apply_of_a_schedule_the_policy_forbids_is_one_line_and_applies_nothing(
    run, monkeypatch, tmp_path: Path, database_url: str, schema: str
) -> None:
    assert run("migrate").code == 0
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    monkeypatch.setenv("BEATKEEPER_POLICY_FILE", str(policy))
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "a-good.yaml").write_text(GOOD)
    forbidden = GOOD.replace("nightly", "noop").replace("billing.noop", "beatkeeper.noop")
    (manifests / "b-forbidden.yaml").write_text(forbidden)
    result = run("apply", "-f", str(manifests))
    assert result.code == 1
    assert result.err.strip().splitlines() == [
        f"beatkeeper: error: {manifests / 'b-forbidden.yaml'}: task beatkeeper.noop is not "
        f"allowed in namespace billing by the tenancy policy ({policy}) (allowed: billing.*); "
        "nothing applied"
    ]
    assert live_names(database_url, schema) == set()
    (manifests / "b-forbidden.yaml").unlink()
    assert run("apply", "-f", str(manifests)).code == 0
    assert live_names(database_url, schema) == {"nightly"}


def test_apply_with_an_unreadable_policy_file_is_one_line(run, monkeypatch, tmp_path: Path) -> None:
    assert run("migrate").code == 0
    monkeypatch.setenv("BEATKEEPER_POLICY_FILE", str(tmp_path / "missing.yaml"))
    (tmp_path / "good.yaml").write_text(GOOD)
    result = run("apply", "-f", str(tmp_path / "good.yaml"))
    assert result.code == 1
    assert len(result.err.strip().splitlines()) == 1
    assert f"cannot read the policy file {tmp_path / 'missing.yaml'}" in result.err
