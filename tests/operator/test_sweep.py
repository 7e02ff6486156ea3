"""Rows whose Schedule resource vanished without the delete handler are retired."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime

import beatkeeper_operator.kube
from harness import create, delete, eventually, manifest, merge_patch, ready_becomes
from sqlalchemy import Engine, select

from beatkeeper.spec import validate_manifest
from beatkeeper.store.models import schedules
from beatkeeper.store.schedules import apply_schedule


def live(db: Engine, uid: uuid.UUID) -> bool:
    with db.connect() as connection:
        row = connection.execute(
            select(schedules.c.deleted_at).where(schedules.c.id == uid)
        ).first()
    return row is not None and row.deleted_at is None


def applied_without_cluster(db: Engine, name: str, namespace: str) -> uuid.UUID:
    document = manifest(name, namespace)
    with db.begin() as connection:
        now = datetime.now(UTC)
        return apply_schedule(connection, validate_manifest(document, now=now).manifest, now=now).id


def applied_from_cluster(db: Engine, name: str, namespace: str) -> uuid.UUID:
    document = manifest(name, namespace)
    document["metadata"]["uid"] = str(uuid.uuid4())
    with db.begin() as connection:
        now = datetime.now(UTC)
        return apply_schedule(connection, validate_manifest(document, now=now).manifest, now=now).id


async def strip_finalizer_and_delete(cluster, name: str) -> None:  # type: ignore[no-untyped-def]
    await merge_patch(cluster, "team-a", name, {"metadata": {"finalizers": None}})
    await delete(cluster, "team-a", name)


async def test_a_row_whose_resource_vanished_is_retired(cluster, start_operator, db, monkeypatch):
    monkeypatch.setattr(beatkeeper_operator.kube, "LIST_PAGE", 2)  # several pages
    first = await start_operator()
    uids = {}
    for name in ("kept-1", "kept-2", "kept-3", "orphan"):
        uids[name] = uuid.UUID((await create(cluster, manifest(name)))["metadata"]["uid"])
    for name in uids:
        await ready_becomes(cluster, "team-a", name, reason="Scheduled")
    await first.stop()  # the outage: the admin strips the finalizer meanwhile
    await strip_finalizer_and_delete(cluster, "orphan")
    local = applied_without_cluster(db, "from-a-laptop", "team-a")
    assert live(db, uids["orphan"])

    await start_operator(sweep_interval=0.2)
    await eventually(lambda: not live(db, uids["orphan"]), what="the orphan retired")
    assert all(live(db, uids[name]) for name in ("kept-1", "kept-2", "kept-3"))
    assert live(db, local)
    assert cluster.counts["LIST:"] >= 3


async def test_rows_of_namespaces_not_watched_are_left_alone(cluster, start_operator, db, settings):
    elsewhere = applied_from_cluster(db, "not-mine", "team-b")
    handle = await start_operator(
        settings_=dataclasses.replace(settings, namespaces=("team-a",)), sweep_interval=0.2
    )
    orphan = applied_from_cluster(db, "mine", "team-a")
    await create(cluster, manifest("present"))
    await ready_becomes(cluster, "team-a", "present", reason="Scheduled")
    await eventually(lambda: not live(db, orphan), what="the orphan in team-a retired")
    assert live(db, elsewhere)
    assert handle.runtime is not None
