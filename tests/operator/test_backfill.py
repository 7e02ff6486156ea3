"""The backfill annotation plans a window's occurrences once, however often it is seen."""

from __future__ import annotations

import uuid

from beatkeeper_operator.reconcile import BACKFILL_ANNOTATION as BACKFILL
from harness import create, current, events, eventually, manifest, merge_patch, ready
from sqlalchemy import Engine, select

from beatkeeper.store.models import runs


def backfilled(db: Engine, schedule_id: uuid.UUID) -> list[str]:
    with db.connect() as connection:
        return [
            moment.isoformat()
            for moment in connection.execute(
                select(runs.c.planned_at)
                .where(runs.c.schedule_id == schedule_id, runs.c.origin == "backfill")
                .order_by(runs.c.planned_at)
            ).scalars()
        ]


async def test_backfill_plans_the_window_once(cluster, start_operator, db):
    await start_operator()
    created = await create(cluster, manifest("hourly", cron="0 * * * *"))
    uid = uuid.UUID(created["metadata"]["uid"])
    await eventually(lambda: ready(cluster, "team-a", "hourly")["reason"] == "Scheduled")
    window = "2026-01-01T00:00:00+00:00/2026-01-01T03:00:00+00:00"
    await merge_patch(
        cluster, "team-a", "hourly", {"metadata": {"annotations": {BACKFILL: window}}}
    )

    planned = await eventually(lambda: backfilled(db, uid))
    assert planned == [f"2026-01-01T0{hour}:00:00+00:00" for hour in range(4)]
    assert await eventually(lambda: events(cluster, "Backfilled"))

    # Every later update shows the same annotation again: nothing more is planned.
    await merge_patch(cluster, "team-a", "hourly", {"metadata": {"labels": {"touched": "yes"}}})
    await eventually(
        lambda: current(cluster, "team-a", "hourly")["metadata"].get("labels", {}).get("touched")
    )
    await eventually(lambda: current(cluster, "team-a", "hourly")["status"].get("lastRun"))
    assert backfilled(db, uid) == planned
    assert len(events(cluster, "Backfilled")) == 1


async def test_malformed_backfill_window_is_a_warning(cluster, start_operator, db):
    await start_operator()
    created = await create(
        cluster,
        {
            **manifest("sloppy"),
            "metadata": {
                "name": "sloppy",
                "namespace": "team-a",
                "annotations": {BACKFILL: "yesterday/today"},
            },
        },
    )
    warning = await eventually(lambda: events(cluster, "InvalidBackfill"))
    assert "<from>/<to>" in warning[0]["message"]
    # The Event is posted before kopf applies the handler's status patch.
    await eventually(lambda: ready(cluster, "team-a", "sloppy")["reason"] == "Scheduled")
    assert backfilled(db, uuid.UUID(created["metadata"]["uid"])) == []
