"""The operator survives a database outage and its own restart without repeating itself."""

from __future__ import annotations

import asyncio

from harness import create, current, eventually, manifest, ready, ready_becomes
from sqlalchemy import Engine, func, select

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
