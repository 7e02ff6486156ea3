"""``kubectl beatkeeper`` against the API emulator and the running operator.

The plugin reads a kubeconfig pointing at the emulator and runs in a thread (it is
synchronous; the emulator serves on the test's event loop). Each command is checked by what
the operator then does in the store, and each refusal by its one line and exit status.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from beatkeeper_operator.plugin import commands, main
from harness import create, current, events, eventually, manifest, merge_patch, ready
from sqlalchemy import Engine, select, update
from stopping import SLOW_TASK, Stack, process_gone

from beatkeeper.store import backfills, requests
from beatkeeper.store.models import cancel_requests, runs, schedules


@pytest.fixture
def kubeconfig(cluster_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A kubeconfig with two contexts on the emulator: team-a (current) and team-b."""
    contexts = [
        {"name": name, "context": {"cluster": "emulator", "user": "tester", "namespace": name}}
        for name in ("team-a", "team-b")
    ]
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "emulator", "cluster": {"server": cluster_url}}],
        "users": [{"name": "tester", "user": {"token": "test"}}],
        "contexts": contexts,
        "current-context": "team-a",
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    monkeypatch.setenv("KUBECONFIG", str(path))
    return path


async def plugin(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run ``kubectl beatkeeper ARGV``: its exit status, stdout and stderr."""
    capsys.readouterr()
    try:
        code = await asyncio.to_thread(main, list(argv))
    except SystemExit as exc:  # argparse's usage errors and --version
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def runs_of(db: Engine, schedule_id: uuid.UUID, origin: str | None = None) -> list[Any]:
    query = select(runs).where(runs.c.schedule_id == schedule_id).order_by(runs.c.planned_at)
    if origin is not None:
        query = query.where(runs.c.origin == origin)
    with db.connect() as connection:
        return list(connection.execute(query))


async def scheduled(cluster: Any, name: str, **spec: Any) -> uuid.UUID:
    created = await create(cluster, manifest(name, **spec))
    await eventually(lambda: ready(cluster, "team-a", name)["reason"] == "Scheduled")
    return uuid.UUID(created["metadata"]["uid"])


def test_backfill_cap_matches_the_store():
    assert commands.MAX_BACKFILL == backfills.MAX_BACKFILL


def test_trigger_run_id_matches_the_store():
    schedule = uuid.uuid4()
    assert commands.trigger_run_id(schedule, "t1") == requests.token_run_id(schedule, "t1")


async def test_trigger_plans_one_run(cluster, start_operator, db, kubeconfig, capsys):
    await start_operator()
    uid = await scheduled(cluster, "nightly")
    code, out, err = await plugin(capsys, "trigger", "nightly")
    assert (code, err) == (0, "")
    [run] = await eventually(lambda: runs_of(db, uid, "manual"))
    assert out.startswith(f"schedule team-a/nightly: asked for run {run.id} now")
    assert run.state == "planned"
    assert await eventually(lambda: events(cluster, "Triggered"))


async def test_backfill_reads_local_times_in_the_schedule_zone(
    cluster, start_operator, db, kubeconfig, capsys
):
    await start_operator()
    uid = await scheduled(cluster, "hourly", cron="0 * * * *", timeZone="Europe/Paris")
    argv = ["--from", "2026-01-01T01:00", "--to", "2026-01-01T03:00"]
    code, _, err = await plugin(capsys, "backfill", "hourly", *argv)
    assert (code, err) == (0, "")
    planned = await eventually(lambda: runs_of(db, uid, "backfill"))
    # 01:00 to 03:00 in Paris is 00:00 to 02:00 UTC.
    assert [run.planned_at.astimezone(UTC).hour for run in planned] == [0, 1, 2]


async def test_bad_times_are_usage_errors(cluster, start_operator, kubeconfig, capsys):
    await start_operator()
    await scheduled(cluster, "hourly", cron="0 * * * *")
    code, out, err = await plugin(capsys, "backfill", "hourly", "--from", "soon", "--to", "later")
    assert (code, out) == (2, "")
    assert err.startswith("kubectl beatkeeper: --from:")
    assert err.count("\n") == 1
    code, _, err = await plugin(capsys, "replay", "hourly", "1a2b")
    assert code == 2
    assert "first 8+ characters" in err


async def test_suspend_then_resume(cluster, start_operator, kubeconfig, capsys):
    await start_operator()
    await scheduled(cluster, "nightly")
    assert (await plugin(capsys, "suspend", "nightly"))[0] == 0
    assert current(cluster, "team-a", "nightly")["spec"]["suspend"] is True
    await eventually(lambda: ready(cluster, "team-a", "nightly")["reason"] == "Suspended")
    assert (await plugin(capsys, "resume", "nightly"))[0] == 0
    assert current(cluster, "team-a", "nightly")["spec"]["suspend"] is False
    await eventually(lambda: ready(cluster, "team-a", "nightly")["reason"] == "Scheduled")


def pause(db: Engine, uid: uuid.UUID, reason: str) -> None:
    """What the worker does when ``pauseAfterFailures`` is reached."""
    with db.begin() as connection:
        connection.execute(
            update(schedules)
            .where(schedules.c.id == uid)
            .values(suspended=True, paused_reason=reason, updated_at=datetime.now(UTC))
        )


def paused_reason(db: Engine, uid: uuid.UUID) -> str | None:
    with db.connect() as connection:
        query = select(schedules.c.paused_reason).where(schedules.c.id == uid)
        return connection.execute(query).scalar_one()


async def test_resume_lifts_a_pause_after_failures_once(
    cluster, start_operator, db, kubeconfig, capsys
):
    await start_operator()
    uid = await scheduled(cluster, "flaky")
    pause(db, uid, "3 failures in a row")
    await eventually(lambda: ready(cluster, "team-a", "flaky")["reason"] == "PausedAfterFailures")

    code, out, _ = await plugin(capsys, "resume", "flaky")
    assert code == 0
    assert "paused after failures: 3 failures in a row" in out
    await eventually(lambda: paused_reason(db, uid) is None)
    await eventually(lambda: ready(cluster, "team-a", "flaky")["reason"] == "Scheduled")
    assert await eventually(lambda: events(cluster, "Resumed"))

    # Paused again later: the old resume annotation, seen again, does not lift it.
    pause(db, uid, "3 more failures")
    await merge_patch(cluster, "team-a", "flaky", {"metadata": {"labels": {"touched": "yes"}}})
    await eventually(lambda: ready(cluster, "team-a", "flaky")["reason"] == "PausedAfterFailures")
    assert paused_reason(db, uid) == "3 more failures"
    assert len(events(cluster, "Resumed")) == 1


def set_state(db: Engine, run_id: uuid.UUID, state: str) -> None:
    with db.begin() as connection:
        connection.execute(update(runs).where(runs.c.id == run_id).values(state=state))


async def test_replay_a_dead_run_by_prefix(cluster, start_operator, db, kubeconfig, capsys):
    await start_operator()
    uid = await scheduled(cluster, "nightly")
    assert (await plugin(capsys, "trigger", "nightly"))[0] == 0
    [dead] = await eventually(lambda: runs_of(db, uid, "manual"))
    set_state(db, dead.id, "dead")

    code, _, err = await plugin(capsys, "replay", "nightly", str(dead.id)[:8])
    assert (code, err) == (0, "")
    [replayed] = await eventually(lambda: runs_of(db, uid, "replay"))
    assert replayed.replay_of == dead.id
    assert await eventually(lambda: events(cluster, "Replayed"))
    await merge_patch(cluster, "team-a", "nightly", {"metadata": {"labels": {"touched": "yes"}}})
    await eventually(lambda: current(cluster, "team-a", "nightly")["metadata"].get("labels"))
    await eventually(lambda: len(events(cluster, "Replayed")) == 1)
    assert len(runs_of(db, uid, "replay")) == 1


async def test_cancel_a_planned_run_and_ask_for_a_running_one_to_stop(
    cluster, start_operator, db, kubeconfig, capsys
):
    await start_operator()
    uid = await scheduled(cluster, "nightly")
    assert (await plugin(capsys, "trigger", "nightly"))[0] == 0
    [run] = await eventually(lambda: runs_of(db, uid, "manual"))
    code, _, err = await plugin(capsys, "cancel", "nightly", str(run.id)[:8])
    assert (code, err) == (0, "")
    await eventually(lambda: runs_of(db, uid, "manual")[0].state == "cancelled")
    assert await eventually(lambda: events(cluster, "Cancelled"))

    assert (await plugin(capsys, "trigger", "nightly"))[0] == 0
    second = await eventually(lambda: [r for r in runs_of(db, uid, "manual") if r.id != run.id])
    set_state(db, second[0].id, "running")
    assert (await plugin(capsys, "cancel", "nightly", str(second[0].id)))[0] == 0
    [asked] = await eventually(lambda: events(cluster, "CancelRequested"))
    assert f"run {second[0].id} is running" in asked["message"]
    assert requested(db, second[0].id) is not None
    assert runs_of(db, uid, "manual")[1].state == "running"  # until a worker stops it


def requested(db: Engine, run_id: uuid.UUID) -> Any:
    with db.connect() as connection:
        query = select(cancel_requests).where(cancel_requests.c.run_id == run_id)
        return connection.execute(query).first()


async def test_cancel_stops_a_running_task_once(
    cluster, start_operator, db, kubeconfig, capsys, tmp_path, settings_with_broker
):
    """The whole path: annotation, operator, request row, a real Beat's revoke, a real
    prefork worker killing the task's process before it could finish."""
    stack = Stack(settings_with_broker, tmp_path)
    body = manifest("slow", task=SLOW_TASK, args=[60], queue=stack.queue, interval="1d")
    del body["spec"]["cron"]
    await start_operator()
    uid = uuid.UUID((await create(cluster, body))["metadata"]["uid"])
    with contextlib.ExitStack() as processes:
        await asyncio.to_thread(processes.enter_context, stack.worker())
        await asyncio.to_thread(processes.enter_context, stack.beat())
        assert (await plugin(capsys, "trigger", "slow"))[0] == 0
        [run] = await eventually(lambda: runs_of(db, uid, "manual"))
        pid = await eventually(lambda: stack.started_pid(run.id), timeout=30)
        await eventually(lambda: "running" in recent_states(cluster, "slow"))

        code, out, err = await plugin(capsys, "cancel", "slow", str(run.id)[:8])
        assert (code, err) == (0, "")
        assert out == (
            f"schedule team-a/slow: cancel requested; run {str(run.id)[:8]} is running; it will "
            "be stopped (kubectl get events shows when)\n"
        )
        await eventually(lambda: runs_of(db, uid, "manual")[0].state == "cancelled")
        await eventually(lambda: process_gone(pid))
        assert not stack.finished(run.id)
        [cancelled] = runs_of(db, uid, "manual")
        assert cancelled.error.startswith("cancelled on request (beatkeeper.io/cancel: ")
        assert ": stopped on worker@" in cancelled.error
        assert len(await eventually(lambda: events(cluster, "CancelRequested"))) == 1

        # Asked again, and the old annotation seen again: nothing more happens.
        assert (await plugin(capsys, "cancel", "slow", str(run.id)))[0] == 0
        await merge_patch(cluster, "team-a", "slow", {"metadata": {"labels": {"touched": "yes"}}})
        await eventually(lambda: current(cluster, "team-a", "slow")["metadata"].get("labels"))
        await eventually(lambda: "cancelled" in recent_states(cluster, "slow"))
        assert len(events(cluster, "CancelRequested")) == 1
        assert not events(cluster, "InvalidCancel")
        assert [r.state for r in runs_of(db, uid, "manual")] == ["cancelled"]


def recent_states(cluster: Any, name: str) -> list[str]:
    status = current(cluster, "team-a", name).get("status") or {}
    return [run["state"] for run in status.get("recentRuns") or []]


async def test_runs_lists_recent_runs(cluster, start_operator, db, kubeconfig, capsys):
    await start_operator()
    uid = await scheduled(cluster, "nightly")
    assert (await plugin(capsys, "trigger", "nightly"))[0] == 0
    [run] = await eventually(lambda: runs_of(db, uid, "manual"))
    await eventually(lambda: current(cluster, "team-a", "nightly")["status"].get("recentRuns"))

    code, out, _ = await plugin(capsys, "runs", "nightly")
    assert code == 0
    header, line = out.splitlines()
    assert header.split()[:3] == ["SCHEDULE", "RUN", "STATE"]
    assert line.split()[:3] == ["nightly", str(run.id)[:8], "planned"]
    code, out, _ = await plugin(capsys, "runs", "-A")
    assert code == 0
    assert out.splitlines()[1].split()[:2] == ["team-a", "nightly"]


async def test_missing_schedule_is_one_line(cluster, kubeconfig, capsys):
    code, out, err = await plugin(capsys, "trigger", "missing")
    assert (code, out) == (1, "")
    assert err == (
        'kubectl beatkeeper: schedules.beatkeeper.io "missing" not found '
        'in namespace "team-a" (patch)\n'
    )


async def test_rbac_denial_is_one_line(cluster, start_operator, kubeconfig, capsys):
    await start_operator()
    await scheduled(cluster, "nightly")
    cluster.denied.add("update:schedules")
    code, _, err = await plugin(capsys, "suspend", "nightly")
    assert code == 1
    assert err == (
        'kubectl beatkeeper: forbidden: you cannot patch schedules.beatkeeper.io "nightly" '
        'in namespace "team-a"; ask for RBAC that allows it\n'
    )
    assert current(cluster, "team-a", "nightly")["spec"].get("suspend") is not True


async def test_context_and_namespace_choose_where(cluster, start_operator, kubeconfig, capsys):
    await start_operator()
    await create(cluster, manifest("nightly", namespace="team-b"))
    await eventually(lambda: ready(cluster, "team-b", "nightly")["reason"] == "Scheduled")
    assert (await plugin(capsys, "suspend", "nightly", "--context", "team-b"))[0] == 0
    assert current(cluster, "team-b", "nightly")["spec"]["suspend"] is True
    assert (await plugin(capsys, "resume", "nightly", "-n", "team-b"))[0] == 0
    assert current(cluster, "team-b", "nightly")["spec"]["suspend"] is False


async def test_version_and_help(capsys):
    code, out, _ = await plugin(capsys, "--version")
    assert code == 0
    assert out.startswith("kubectl-beatkeeper ")
    code, out, _ = await plugin(capsys, "--help")
    assert code == 0
    assert "kubectl beatkeeper replay nightly 1a2b3c4d" in out
    code, out, _ = await plugin(capsys, "backfill", "--help")
    assert code == 0
    assert "kubectl beatkeeper backfill nightly -n team-a --from" in out
    code, _, err = await plugin(capsys, "frobnicate")
    assert code == 2
    assert "invalid choice" in err


async def test_runs_show_why_a_run_failed(cluster, start_operator, db, kubeconfig, capsys):
    await start_operator()
    uid = await scheduled(cluster, "nightly")
    assert (await plugin(capsys, "trigger", "nightly"))[0] == 0
    [run] = await eventually(lambda: runs_of(db, uid, "manual"))
    with db.begin() as connection:
        connection.execute(
            update(runs)
            .where(runs.c.id == run.id)
            .values(state="dead", error="ValueError: no such invoice", updated_at=datetime.now(UTC))
        )
    status = lambda: current(cluster, "team-a", "nightly")["status"]  # noqa: E731
    await eventually(lambda: status()["recentRuns"][0]["state"] == "dead")
    code, out, _ = await plugin(capsys, "runs", "nightly")
    assert code == 0
    assert out.splitlines()[1].endswith("ValueError: no such invoice")


async def test_replay_names_only_runs_of_its_schedule(
    cluster, start_operator, db, kubeconfig, capsys
):
    await start_operator()
    other = await scheduled(cluster, "other")
    await scheduled(cluster, "nightly")
    assert (await plugin(capsys, "trigger", "other"))[0] == 0
    [dead] = await eventually(lambda: runs_of(db, other, "manual"))
    set_state(db, dead.id, "dead")
    assert (await plugin(capsys, "replay", "nightly", str(dead.id)))[0] == 0
    warning = await eventually(lambda: events(cluster, "InvalidReplay"))
    assert f"no run id starts with {dead.id}" in warning[0]["message"]
    assert runs_of(db, other, "replay") == []


async def test_unreachable_server_and_bad_kubeconfig_are_one_line(
    tmp_path, monkeypatch, kubeconfig, capsys
):
    code, _, err = await plugin(capsys, "trigger", "nightly", "--context", "nowhere")
    assert code == 1
    assert err.startswith("kubectl beatkeeper: cannot load the kubeconfig:")
    assert err.count("\n") == 1
    broken = tmp_path / "broken"
    broken.write_text("clusters: [", encoding="utf-8")
    monkeypatch.setenv("KUBECONFIG", str(broken))
    code, _, err = await plugin(capsys, "trigger", "nightly")
    assert code == 1
    assert err.startswith("kubectl beatkeeper: cannot load the kubeconfig:")
    closed = tmp_path / "closed"
    document = yaml.safe_load(kubeconfig.read_text(encoding="utf-8"))
    document["clusters"][0]["cluster"]["server"] = "http://127.0.0.1:9"
    closed.write_text(yaml.safe_dump(document), encoding="utf-8")
    monkeypatch.setenv("KUBECONFIG", str(closed))
    code, _, err = await plugin(capsys, "trigger", "nightly")
    assert code == 1
    assert err.startswith("kubectl beatkeeper: cannot reach the API server at http://127.0.0.1:9")
    assert err.count("\n") == 1


async def test_runs_takes_a_name_or_all_namespaces(capsys):
    code, _, err = await plugin(capsys, "runs", "nightly", "-A")
    assert code == 2
    assert "give NAME or -A, not both" in err


def test_without_the_kubernetes_client_the_plugin_says_which_extra_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The image and a plain `pip install beatkeeper` leave the client out (the kubectl extra).
    monkeypatch.delitem(sys.modules, "beatkeeper_operator.plugin.cli", raising=False)
    monkeypatch.delitem(sys.modules, "beatkeeper_operator.plugin.cluster", raising=False)
    monkeypatch.delattr(sys.modules["beatkeeper_operator.plugin"], "cli", raising=False)
    monkeypatch.setitem(sys.modules, "kubernetes", None)
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 2
    assert capsys.readouterr().err == (
        "kubectl beatkeeper needs the Kubernetes client: pip install 'beatkeeper[kubectl]'\n"
    )
