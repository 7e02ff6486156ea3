"""The operator survives a database outage and its own restart without repeating itself."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import time

import aiohttp
from harness import (
    create,
    current,
    events,
    eventually,
    manifest,
    merge_patch,
    ready,
    ready_becomes,
)
from sqlalchemy import Engine, func, make_url, select, text

from beatkeeper.policy import parse_policy
from beatkeeper.store.models import runs, schedules


def status_patches(cluster) -> int:  # type: ignore[no-untyped-def]
    return sum(count for key, count in cluster.counts.items() if key.startswith("UPDATE:"))


def row_counts(db: Engine) -> tuple[int, int]:
    with db.connect() as connection:
        return (
            connection.execute(select(func.count()).select_from(schedules)).scalar_one(),
            connection.execute(select(func.count()).select_from(runs)).scalar_one(),
        )


async def test_database_outage_is_reported_then_recovers(
    cluster, start_operator, database_proxy, db
):
    proxy, through_proxy = database_proxy
    await start_operator(settings_=through_proxy)
    await create(cluster, manifest("before"))
    await eventually(lambda: ready(cluster, "team-a", "before")["reason"] == "Scheduled")

    proxy.cut()
    await create(cluster, manifest("during"))
    condition = await ready_becomes(cluster, "team-a", "during", reason="DatabaseUnavailable")
    assert condition["status"] == "False"
    assert "127.0.0.1" in condition["message"]
    assert row_counts(db)[0] == 1

    proxy.restore()
    condition = await ready_becomes(cluster, "team-a", "during", status="True", timeout=20)
    assert condition["reason"] == "Scheduled"
    assert row_counts(db)[0] == 2
    assert ready(cluster, "team-a", "before")["reason"] == "Scheduled"


async def test_a_statement_the_server_gives_up_on_is_reported_then_retried(
    cluster, start_operator, settings, db
):
    # lock_timeout stands in for the 30 s statement_timeout: both are the server giving up.
    url = make_url(settings.require_database_url()).update_query_dict(
        {"options": "-c lock_timeout=200"}
    )
    impatient = dataclasses.replace(settings, database_url=url.render_as_string(False))
    await start_operator(settings_=impatient)
    with db.connect() as locker:
        locker.execute(text("LOCK TABLE schedules IN ACCESS EXCLUSIVE MODE"))
        await create(cluster, manifest("locked-out"))
        condition = await ready_becomes(
            cluster, "team-a", "locked-out", reason="DatabaseUnavailable"
        )
        assert condition["status"] == "False"
        assert condition["message"].startswith("a statement failed on PostgreSQL at ")
        assert condition["message"].endswith("canceling statement due to lock timeout")
        locker.rollback()
    condition = await ready_becomes(cluster, "team-a", "locked-out", status="True", timeout=20)
    assert condition["reason"] == "Scheduled"
    assert row_counts(db)[0] == 1


async def test_a_schema_never_migrated_is_reported_with_what_to_run(
    cluster, start_operator, settings
):
    elsewhere = dataclasses.replace(settings, db_schema="bk_never_migrated")
    await start_operator(settings_=elsewhere)
    await create(cluster, manifest("unmigrated"))
    condition = await ready_becomes(cluster, "team-a", "unmigrated", reason="DatabaseUnavailable")
    assert condition["status"] == "False"
    assert condition["message"] == (
        "schema 'bk_never_migrated' has no beatkeeper tables: run `beatkeeper migrate`"
    )


async def test_restart_changes_nothing_and_patches_nothing(cluster, start_operator, db):
    first = await start_operator()
    names = ["alpha", "beta", "gamma"]
    for name in names:
        await create(cluster, manifest(name))
    for name in names:
        await eventually(lambda name=name: ready(cluster, "team-a", name)["reason"] == "Scheduled")
    await asyncio.sleep(0.5)  # let the refresher's first polls settle
    before = {name: current(cluster, "team-a", name) for name in names}
    rows, patches = row_counts(db), status_patches(cluster)
    await first.stop()

    second = await start_operator()
    # The resume handlers have run once every Schedule is in the runtime's cache.
    await eventually(lambda: second.runtime and len(second.runtime.served) == len(names))
    await asyncio.sleep(1.0)  # several refresher polls: any stray write would show by now

    assert row_counts(db) == rows
    assert status_patches(cluster) == patches
    assert {name: current(cluster, "team-a", name) for name in names} == before


async def test_a_network_partition_is_reported_within_the_bound(
    cluster, start_operator, database_proxy
):
    proxy, through_proxy = database_proxy
    port = free_port()
    await start_operator(settings_=through_proxy, database_timeout=2.0, health_port=port)
    await create(cluster, manifest("before"))
    await ready_becomes(cluster, "team-a", "before", reason="Scheduled")
    assert await readyz(port) == 200

    proxy.stall()  # sockets stay open; nothing is forwarded, nothing is refused
    stalled_at = time.monotonic()
    await merge_patch(cluster, "team-a", "before", {"spec": {"cron": "0 4 * * *"}})
    condition = await ready_becomes(cluster, "team-a", "before", reason="DatabaseUnavailable")
    assert time.monotonic() - stalled_at < 10
    assert "did not answer within 2s" in condition["message"]
    await readyz_becomes(port, 503, timeout=10)

    proxy.restore()
    await ready_becomes(cluster, "team-a", "before", status="True", timeout=30)
    await readyz_becomes(port, 200, timeout=30)


async def test_a_partition_stalls_the_refresher_no_longer_than_the_bound(
    cluster, start_operator, database_proxy
):
    proxy, through_proxy = database_proxy
    port = free_port()
    await start_operator(settings_=through_proxy, database_timeout=2.0, health_port=port)
    await create(cluster, manifest("idle"))
    await ready_becomes(cluster, "team-a", "idle", reason="Scheduled")
    await readyz_becomes(port, 200, timeout=10)

    proxy.stall()  # no handler runs: only the refresher notices
    stalled_at = time.monotonic()
    await readyz_becomes(port, 503, timeout=10)
    assert time.monotonic() - stalled_at < 6
    proxy.restore()
    await readyz_becomes(port, 200, timeout=30)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def readyz(port: int) -> int:
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}/readyz") as response,
        ):
            return response.status
    except aiohttp.ClientConnectionError:
        return 0


async def readyz_becomes(port: int, status: int, *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while (seen := await readyz(port)) != status:
        assert time.monotonic() < deadline, f"/readyz stayed {seen}, not {status}"
        await asyncio.sleep(0.1)


async def test_a_restart_posts_no_event_again_for_a_problem_already_reported(
    cluster, start_operator
):
    policy = parse_policy({"namespaces": {"team-a": {"tasks": ["billing.*"]}}})
    first = await start_operator(policy=policy)
    await create(cluster, manifest("broken", cron="not a cron"))
    await create(cluster, manifest("refused", task="payroll.tasks.pay"))
    await ready_becomes(cluster, "team-a", "broken", reason="InvalidSpec")
    await ready_becomes(cluster, "team-a", "refused", reason="TaskNotAllowed")
    await eventually(lambda: events(cluster, "InvalidSpec") and events(cluster, "TaskNotAllowed"))
    posted = len(events(cluster, "InvalidSpec")), len(events(cluster, "TaskNotAllowed"))
    await first.stop()

    second = await start_operator(policy=policy)
    await eventually(lambda: second.runtime and len(second.runtime.served) == 2)
    await asyncio.sleep(1.0)  # several refresher polls: a stray Event would show by now
    assert (len(events(cluster, "InvalidSpec")), len(events(cluster, "TaskNotAllowed"))) == posted

    await merge_patch(cluster, "team-a", "broken", {"spec": {"cron": "still not a cron"}})
    await eventually(lambda: len(events(cluster, "InvalidSpec")) == posted[0] + 1)


async def test_a_start_with_many_schedules_handles_all_and_what_changed_meanwhile(
    cluster, start_operator
):
    names = [f"existing-{index}" for index in range(150)]
    for name in names:
        await create(cluster, manifest(name))
    await start_operator()
    await eventually(lambda: cluster.watches, what="the operator watching")
    for index in range(20):  # created between the operator's list and its watch, or after
        await create(cluster, manifest(f"meanwhile-{index}"))
        names.append(f"meanwhile-{index}")

    def all_ready() -> bool:
        return all(ready(cluster, "team-a", name)["reason"] == "Scheduled" for name in names)

    await eventually(all_ready, timeout=60, what="every Schedule Ready")
