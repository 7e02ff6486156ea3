"""`beatkeeper runs`, `trigger`, `backfill`, `runs replay` and `smoke` against PostgreSQL."""

from __future__ import annotations

import functools
import json
import os
import pty
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select, update
from store_rows import add_run, billing_schedule

from beatkeeper.settings import Settings
from beatkeeper.states import RunState
from beatkeeper.store.models import runs, schedules

S = RunState
NOW = datetime.now(UTC)
schedule = functools.partial(billing_schedule, now=NOW)  # every schedule here is applied at NOW


@pytest.fixture
def cli(
    db: Engine, settings: Settings, beatkeeper_cli: Any, monkeypatch: pytest.MonkeyPatch
) -> Any:
    del db  # tables emptied for each test
    monkeypatch.setenv("BEATKEEPER_DATABASE_URL", settings.require_database_url())
    monkeypatch.setenv("BEATKEEPER_DB_SCHEMA", settings.db_schema)
    return beatkeeper_cli


def all_runs(engine: Engine) -> list[Any]:
    with engine.connect() as db:
        return list(db.execute(select(runs).order_by(runs.c.planned_at)))


# -- runs ------------------------------------------------------------------------------------


def test_runs_json_has_one_object_per_run_newest_first(cli: Any, db: Engine) -> None:
    applied = schedule(db)
    t = datetime(2026, 3, 1, 2, tzinfo=UTC)
    first = add_run(db, applied, t, S.SUCCEEDED, started_at=t, finished_at=t + timedelta(1))
    second = add_run(db, applied, t + timedelta(days=1), S.DEAD, error="ValueError: no", attempt=3)
    result = cli("runs", "billing/nightly", "-o", "json")
    assert result.code == 0, result.err
    listed = json.loads(result.out)
    assert [run["id"] for run in listed] == [str(second), str(first)]
    assert listed[0] == listed[0] | {
        "schedule": "billing/nightly",
        "planned_at": "2026-03-02T02:00:00+00:00",
        "state": "dead",
        "attempt": 3,
        "enqueued_at": None,
        "started_at": None,
        "finished_at": None,
        "error": "ValueError: no",
    }
    assert listed[1]["started_at"] == "2026-03-01T02:00:00+00:00"


def test_runs_table_keeps_ids_whole_beside_a_long_error_and_shows_the_origin(
    cli: Any, db: Engine
) -> None:
    applied = schedule(db)
    t = datetime(2026, 3, 1, 2, tzinfo=UTC)
    dead = add_run(db, applied, t, S.DEAD, error="ValueError: " + "x" * 300, origin="backfill")
    result = cli("runs")
    assert result.code == 0, result.err
    [row] = [line for line in result.out.splitlines() if "billing/nightly" in line]
    assert str(dead) in row  # whole, on the row's line
    assert "backfill" in row
    assert row.rstrip().endswith("… │")  # the error was cut to fit instead
    assert all(len(line) <= 160 for line in result.out.splitlines())


def test_a_succeeded_run_does_not_show_an_earlier_attempts_error(cli: Any, db: Engine) -> None:
    applied = schedule(db)
    t = datetime(2026, 3, 1, 2, tzinfo=UTC)
    add_run(db, applied, t, S.SUCCEEDED, attempt=2, max_attempts=2, error="TimeoutError: slow")
    result = cli("runs")
    assert "succeeded" in result.out
    assert "TimeoutError" not in result.out


def test_runs_with_nothing_to_list_says_no_runs(cli: Any, db: Engine) -> None:
    schedule(db)
    result = cli("runs", "billing/nightly")
    assert (result.code, result.out) == (0, "no runs\n")


def test_runs_filters_by_state_since_and_schedule(cli: Any, db: Engine) -> None:
    nightly, hourly = schedule(db), schedule(db, "hourly", cron="0 * * * *")
    recent = NOW - timedelta(minutes=30)
    add_run(db, nightly, NOW - timedelta(days=3), S.FAILED)
    wanted = add_run(db, nightly, recent, S.FAILED)
    add_run(db, nightly, recent + timedelta(seconds=1), S.SUCCEEDED)
    add_run(db, hourly, recent, S.FAILED)
    result = cli("runs", "billing/nightly", "--state", "failed", "--since", "1h", "-o", "json")
    assert [run["id"] for run in json.loads(result.out)] == [str(wanted)]
    everything = json.loads(cli("runs", "-o", "json").out)
    assert {run["schedule"] for run in everything} == {"billing/nightly", "billing/hourly"}


def test_runs_table_shows_state_attempt_lag_duration_and_error(cli: Any, db: Engine) -> None:
    applied = schedule(db, retry={"maxAttempts": 3})
    t = datetime(2026, 3, 1, 2, tzinfo=UTC)
    add_run(
        db, applied, t, S.DEAD, attempt=3, max_attempts=3, error="KeyError: 'customer'\nmore",
        started_at=t + timedelta(milliseconds=40), finished_at=t + timedelta(seconds=2.5),
    )  # fmt: skip
    result = cli("runs", "billing/nightly")
    assert result.code == 0, result.err
    row = next(line for line in result.out.splitlines() if "2026-03-01 02:00:00" in line)
    for cell in ("dead", "3/3", "40ms", "2.46s", "KeyError: 'customer'"):
        assert cell in row
    assert "more" not in result.out


def test_runs_rejects_a_bad_since(cli: Any) -> None:
    result = cli("runs", "--since", "last tuesday")
    assert result.code == 2
    assert "--since" in result.err


# -- trigger ----------------------------------------------------------------------------------


def test_trigger_plans_one_manual_run_due_now(cli: Any, db: Engine) -> None:
    applied = schedule(db, retry={"maxAttempts": 4})
    before = datetime.now(UTC)
    result = cli("trigger", "billing/nightly")
    assert result.code == 0, result.err
    [run] = all_runs(db)
    assert result.out.strip() == f"run {run.id} of billing/nightly planned, due now"
    assert (run.state, run.origin, run.task, run.max_attempts) == (
        "planned",
        "manual",
        "billing.invoice",
        4,
    )
    assert before <= run.due_at <= datetime.now(UTC)
    assert run.schedule_id == applied.id
    assert cli("trigger", "billing/nightly").code == 0
    assert len(all_runs(db)) == 2  # every trigger is its own run


def test_runs_of_a_schedule_that_never_existed_is_an_error_not_an_empty_list(
    cli: Any, db: Engine
) -> None:
    result = cli("runs", "billing/missing")
    assert (result.code, result.err.strip()) == (
        1,
        "beatkeeper: error: no schedule billing/missing (live or deleted)",
    )
    schedule(db, name="quiet")  # exists, has no run yet: an empty list
    result = cli("runs", "billing/quiet", "--output", "json")
    assert (result.code, json.loads(result.out)) == (0, [])


def test_trigger_unknown_schedule_is_one_clear_line(cli: Any) -> None:
    result = cli("trigger", "billing/missing")
    assert (result.code, result.err.strip()) == (
        1,
        "beatkeeper: error: no schedule billing/missing",
    )
    assert cli("trigger", "billing/").code == 2
    assert cli("trigger", "a/b/c").code == 2


def test_a_bare_name_means_the_default_namespace_for_every_command(cli: Any, db: Engine) -> None:
    applied = schedule(db, namespace="default")
    assert cli("trigger", "nightly").code == 0
    [run] = all_runs(db)
    assert run.schedule_id == applied.id
    listed = cli("runs", "nightly", "-o", "json")
    assert [entry["id"] for entry in json.loads(listed.out)] == [str(run.id)]
    assert cli("backfill", "nightly", "--from", "2026-01-01", "--to", "2026-01-01T03:00").code == 0
    assert cli("delete", "nightly").out.strip() == "default/nightly deleted"


# -- backfill ---------------------------------------------------------------------------------


def test_backfill_plans_each_occurrence_once(cli: Any, db: Engine) -> None:
    applied = schedule(db, cron="0 */6 * * *")
    existing = add_run(db, applied, datetime(2026, 1, 1, 6, tzinfo=UTC), S.SUCCEEDED)
    result = cli(
        "backfill", "billing/nightly", "--from", "2026-01-01T00:00Z", "--to", "2026-01-02T00:00Z"
    )
    assert result.code == 0, result.err
    assert "5 occurrence(s) in the window, 4 run(s) planned, 1 already had one" in result.out
    planned = all_runs(db)
    assert [run.planned_at.hour for run in planned] == [0, 6, 12, 18, 0]
    assert {run.origin for run in planned if run.id != existing} == {"backfill"}
    assert next(run for run in planned if run.id == existing).state == "succeeded"
    again = cli(
        "backfill", "billing/nightly", "--from", "2026-01-01T00:00Z", "--to", "2026-01-02T00:00Z"
    )
    assert "0 run(s) planned, 5 already had one" in again.out
    assert len(all_runs(db)) == 5


def test_backfill_reads_local_times_in_the_schedule_zone(cli: Any, db: Engine) -> None:
    schedule(db, cron="30 9 * * *", timeZone="America/New_York")
    result = cli("backfill", "billing/nightly", "--from", "2026-07-01", "--to", "2026-07-02T23:59")
    assert result.code == 0, result.err
    assert [run.planned_at for run in all_runs(db)] == [
        datetime(2026, 7, 1, 13, 30, tzinfo=UTC),
        datetime(2026, 7, 2, 13, 30, tzinfo=UTC),
    ]


def test_backfill_keeps_an_interval_in_phase_before_creation(cli: Any, db: Engine) -> None:
    applied = schedule(db, cron=None, interval="1h")
    with db.connect() as connection:
        created = (
            connection.execute(select(schedules.c.created_at).where(schedules.c.id == applied.id))
            .scalar_one()
            .replace(microsecond=0)
        )  # intervals count from whole seconds
    start = created - timedelta(hours=3, minutes=30)
    result = cli(
        "backfill", "billing/nightly", "--from", start.isoformat(), "--to", created.isoformat()
    )
    assert result.code == 0, result.err
    assert [created - run.planned_at for run in all_runs(db)] == [
        timedelta(hours=3), timedelta(hours=2), timedelta(hours=1), timedelta(0),
    ]  # fmt: skip


def test_backfill_refuses_an_upside_down_window(cli: Any, db: Engine) -> None:
    schedule(db)
    result = cli(
        "backfill", "billing/nightly", "--from", "2026-02-01T00:00Z", "--to", "2026-01-01T00:00Z"
    )
    assert result.code == 1
    assert "before it starts" in result.err
    assert all_runs(db) == []


def test_backfilled_past_runs_are_due_now_so_a_starting_deadline_counts_from_the_backfill(
    cli: Any, db: Engine
) -> None:
    schedule(db, cron="0 2 * * *", startingDeadline="1h")
    before = datetime.now(UTC)
    result = cli("backfill", "billing/nightly", "--from", "2026-01-01", "--to", "2026-01-07T23:59")
    assert result.code == 0, result.err
    backfilled = all_runs(db)
    assert len(backfilled) == 7
    assert all(run.due_at >= before for run in backfilled)  # not their planned time
    assert {run.state for run in backfilled} == {"planned"}


def test_backfill_dry_run_lists_the_occurrences_and_plans_nothing(cli: Any, db: Engine) -> None:
    applied = schedule(db, cron="0 0 * * *")
    add_run(db, applied, datetime(2026, 1, 2, tzinfo=UTC), S.SUCCEEDED)
    result = cli(
        "backfill",
        "billing/nightly",
        "--from",
        "2026-01-01T00:00Z",
        "--to",
        "2026-01-03T00:00Z",
        "--dry-run",
    )
    assert result.code == 0, result.err
    assert result.out.splitlines() == [
        "2026-01-01T00:00:00+00:00  would be planned",
        "2026-01-02T00:00:00+00:00  already has a run",
        "2026-01-03T00:00:00+00:00  would be planned",
        "dry run: billing/nightly: 3 occurrence(s) in the window, 2 would be planned, "
        "1 already have one",
    ]
    assert len(all_runs(db)) == 1


def test_backfill_of_many_runs_without_a_terminal_needs_yes(cli: Any, db: Engine) -> None:
    schedule(db, cron="0 0 * * *")
    window = ("--from", "2026-01-01T00:00Z", "--to", "2026-01-31T00:00Z")
    refused = cli("backfill", "billing/nightly", *window)
    assert refused.code == 1
    assert refused.err.strip() == (
        "beatkeeper: error: 31 new run(s) of billing/nightly, 31 of them due now: "
        "check them with --dry-run, then pass --yes to plan them"
    )
    assert all_runs(db) == []
    assert cli("backfill", "billing/nightly", *window, "--yes").code == 0
    assert len(all_runs(db)) == 31


def test_backfill_asks_on_a_terminal_and_plans_nothing_when_told_no(
    db: Engine, settings: Settings, tmp_path: Path
) -> None:
    schedule(db, cron="0 0 * * *")
    leader, follower = pty.openpty()
    env = os.environ | {
        "BEATKEEPER_DATABASE_URL": settings.require_database_url(),
        "BEATKEEPER_DB_SCHEMA": settings.db_schema,
    }
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("beatkeeper")), "backfill", "billing/nightly",
         "--from", "2026-01-01T00:00Z", "--to", "2026-01-31T00:00Z"],
        stdin=follower, stdout=subprocess.PIPE, stderr=follower, env=env, cwd=tmp_path,
    )  # fmt: skip
    os.close(follower)
    asked = b""
    while b"[y/N]" not in asked:
        asked += os.read(leader, 1024)
    assert b"plan 31 new run(s) of billing/nightly, 31 of them due now?" in asked
    os.write(leader, b"n\n")
    assert process.wait(timeout=30) == 1
    os.close(leader)
    assert all_runs(db) == []


def test_backfill_refuses_more_than_the_annotations_limit(cli: Any, db: Engine) -> None:
    schedule(db, cron="0 * * * *")
    result = cli(
        "backfill", "billing/nightly", "--from", "2026-01-01T00:00Z", "--to", "2026-03-01T00:00Z"
    )
    assert result.code == 1
    assert "more than 1000 occurrences in that window" in result.err
    assert all_runs(db) == []


# -- replay -----------------------------------------------------------------------------------


def test_replay_plans_a_new_run_of_a_dead_one(cli: Any, db: Engine) -> None:
    applied = schedule(db, retry={"maxAttempts": 2})
    dead = add_run(
        db, applied, datetime(2026, 3, 1, 2, tzinfo=UTC), S.DEAD, attempt=2, max_attempts=2
    )
    result = cli("runs", "replay", str(dead))
    assert result.code == 0, result.err
    replayed = next(run for run in all_runs(db) if run.id != dead)
    assert result.out.strip() == (
        f"run {replayed.id} planned, due now (replay of {dead}, as billing/nightly's "
        "current spec: task billing.invoice)"
    )
    assert (replayed.state, replayed.origin, replayed.replay_of) == ("planned", "replay", dead)
    assert (replayed.attempt, replayed.max_attempts) == (1, 2)
    assert next(run for run in all_runs(db) if run.id == dead).state == "dead"  # untouched


@pytest.mark.parametrize("state", [S.SUCCEEDED, S.RUNNING, S.PLANNED])
def test_replay_refuses_runs_that_are_not_dead_or_failed(
    cli: Any, db: Engine, state: RunState
) -> None:
    run_id = add_run(db, schedule(db), datetime(2026, 3, 1, 2, tzinfo=UTC), state)
    result = cli("runs", "replay", str(run_id))
    assert result.code == 1
    assert f"is {state}: only dead or failed runs are replayed" in result.err


def test_replay_of_unknown_or_malformed_id(cli: Any) -> None:
    missing = uuid.uuid4()
    assert cli("runs", "replay", str(missing)).err.strip() == f"beatkeeper: error: no run {missing}"
    assert cli("runs", "replay", "not-a-uuid").code == 2


def test_replay_runs_the_schedules_current_task_not_the_old_one(cli: Any, db: Engine) -> None:
    # The old task may be one the schedule (or the policy) no longer allows.
    applied = schedule(db)
    failed = add_run(db, applied, datetime(2026, 3, 1, 2, tzinfo=UTC), S.FAILED)
    schedule(db, task="billing.invoice_v2", kwargs={"batch": 10})
    result = cli("runs", "replay", str(failed))
    assert result.code == 0, result.err
    assert "current spec: task billing.invoice_v2" in result.out
    replayed = next(run for run in all_runs(db) if run.id != failed)
    assert replayed.task == "billing.invoice_v2"


def test_replay_accepts_a_unique_prefix_of_eight_or_more_characters(cli: Any, db: Engine) -> None:
    applied = schedule(db)
    failed = add_run(db, applied, datetime(2026, 3, 1, 2, tzinfo=UTC), S.FAILED)
    result = cli("runs", "replay", str(failed)[:8])
    assert result.code == 0, result.err
    assert f"(replay of {failed}, as billing/nightly's current spec" in result.out
    short = cli("runs", "replay", str(failed)[:7])
    assert short.code == 2
    assert "its first 8 or more characters" in short.err


def test_replay_of_an_ambiguous_prefix_is_one_line(cli: Any, db: Engine) -> None:
    applied = schedule(db)
    for day, suffix in ((1, "1"), (2, "2")):
        add_run(
            db, applied, datetime(2026, 3, day, 2, tzinfo=UTC), S.FAILED,
            id=uuid.UUID(f"abcdef12-0000-4000-8000-00000000000{suffix}"),
        )  # fmt: skip
    result = cli("runs", "replay", "abcdef12")
    assert result.code == 1
    assert result.err == (
        "beatkeeper: error: more than one run id starts with abcdef12: give more characters\n"
    )
    assert cli("runs", "replay", "abcdef99").err.strip().endswith("no run id starts with abcdef99")


def test_replay_of_a_deleted_schedules_run_is_refused(cli: Any, db: Engine) -> None:
    applied = schedule(db)
    failed = add_run(db, applied, datetime(2026, 3, 1, 2, tzinfo=UTC), S.FAILED)
    with db.begin() as connection:
        connection.execute(update(schedules).values(deleted_at=NOW))
    result = cli("runs", "replay", str(failed))
    assert result.code == 1
    assert "billing/nightly, which was deleted" in result.err


# -- smoke ------------------------------------------------------------------------------------


def test_smoke_without_beat_times_out_saying_what_is_missing_and_cleans_up(
    cli: Any, db: Engine
) -> None:
    result = cli("smoke", "--timeout", "1")
    assert result.code == 1
    assert "smoke test timed out after 1s: no run was planned: is Beat running" in result.err
    with db.connect() as connection:
        [row] = connection.execute(select(schedules)).all()
    assert row.task == "beatkeeper.noop"
    assert row.deleted_at is not None


@pytest.fixture
def data_plane(tmp_path: Path, settings_with_broker: Settings, engine: Engine) -> Iterator[None]:
    """The real thing: `celery beat` with beatkeeper's scheduler and a worker of its app."""
    del engine  # migrated first
    env = {
        **os.environ,
        "BEATKEEPER_DATABASE_URL": settings_with_broker.require_database_url(),
        "BEATKEEPER_DB_SCHEMA": settings_with_broker.db_schema,
        "BEATKEEPER_BROKER_URL": settings_with_broker.require_broker_url(),
    }
    base = [sys.executable, "-m", "celery", "-A", "beatkeeper_worker"]
    commands = {
        "beat": [*base, "beat", "-S", "beatkeeper_worker.beat:DatabaseScheduler"],
        "worker": [*base, "worker", "--pool", "prefork", "-c", "1", "--without-mingle",
                   "--without-gossip", "-n", f"smoke-{uuid.uuid4().hex[:6]}@%h"],
    }  # fmt: skip
    processes = []
    for name, command in commands.items():
        with (tmp_path / f"{name}.log").open("wb") as log:
            processes.append(
                subprocess.Popen(command, env=env, cwd=tmp_path, stdout=log, stderr=log)
            )
    try:
        yield
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


def test_smoke_passes_through_beat_and_a_worker(cli: Any, db: Engine, data_plane: None) -> None:
    del data_plane
    result = cli("smoke", "--timeout", "60")
    assert result.code == 0, result.err
    assert result.out.startswith("smoke test passed: run ")
    with db.connect() as connection:
        [row] = connection.execute(select(schedules)).all()
        [run] = connection.execute(select(runs)).all()
    assert row.deleted_at is not None
    assert (run.state, run.task, run.schedule_id) == ("succeeded", "beatkeeper.noop", row.id)


def test_runs_says_when_the_limit_cut_the_list(cli: Any, db: Engine) -> None:
    applied = schedule(db)
    t = datetime(2026, 3, 1, 2, tzinfo=UTC)
    for n in range(3):
        add_run(db, applied, t + timedelta(days=n), S.SUCCEEDED)
    cut = cli("runs", "billing/nightly", "--limit", "2", "-o", "json")
    assert len(json.loads(cut.out)) == 2
    assert "showing the newest 2 runs; older ones match too" in cut.err
    whole = cli("runs", "billing/nightly", "--limit", "3", "-o", "json")
    assert len(json.loads(whole.out)) == 3
    assert "showing" not in whole.err


def test_replay_of_a_run_whose_task_the_policy_now_forbids_plans_nothing(
    cli: Any, db: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    failed = add_run(db, schedule(db), datetime(2026, 3, 1, 2, tzinfo=UTC), S.FAILED)
    policy = tmp_path / "policy.yaml"
    policy.write_text('namespaces:\n  billing: {tasks: ["billing.reports.*"]}\n')
    monkeypatch.setenv("BEATKEEPER_POLICY_FILE", str(policy))
    forbidden = (
        f"billing/nightly: task billing.invoice is not allowed in namespace billing by the "
        f"tenancy policy ({policy}); nothing planned"
    )
    for args in (("runs", "replay", str(failed)), ("trigger", "billing/nightly")):
        result = cli(*args)
        assert result.code == 1
        assert result.err.strip() == f"beatkeeper: error: {forbidden}"
    assert [run.id for run in all_runs(db)] == [failed]
