"""Retire schedules whose Schedule resource no longer exists.

The finalizer makes the delete handler retire a Schedule's row before the resource goes.
An admin who strips the finalizer while the operator or the database is down leaves a
live row that Beat keeps running, with nothing left to delete. Every ``sweep_interval``
the refresher runs ``sweep_once``: it lists every Schedule the operator watches from the
API (all pages; any failure abandons the sweep, so a partial list never retires anything),
then retires the live rows of those namespaces whose uid the API did not list.

Left alone: rows applied after the listing started (their resource may be newer than the
list), rows of namespaces this operator does not watch, and rows applied without a
cluster (`beatkeeper apply` and `beatkeeper dev` without ``metadata.uid``: their id is
derived from namespace and name, never a Kubernetes uid).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from beatkeeper.store import Engine
from beatkeeper.store.schedules import LiveSchedule, delete_schedule, live_schedules
from beatkeeper_operator import kube
from beatkeeper_operator.runtime import Runtime

__all__ = ["sweep_once"]

logger = logging.getLogger(__name__)


async def sweep_once(runtime: Runtime) -> list[LiveSchedule]:
    """Retire the orphaned schedules now; returns what was retired."""
    started = datetime.now(UTC)
    namespaces = runtime.config.settings.namespaces
    listed: set[str] = set()
    for namespace in namespaces or (None,):
        uids = await kube.list_schedule_uids(runtime.kopf_settings, namespace=namespace)
        if uids is None:  # never retire on a partial list
            return []
        listed |= uids
    retired = await runtime.in_database(
        _retire_unlisted, runtime.engine, namespaces, listed, started
    )
    for schedule in retired:
        runtime.served.pop(schedule.id, None)
        logger.warning(
            "retired schedule %s/%s (uid %s): its Schedule resource no longer exists",
            schedule.namespace,
            schedule.name,
            schedule.id,
        )
    return retired


def _retire_unlisted(
    engine: Engine, namespaces: tuple[str, ...], listed: set[str], started: datetime
) -> list[LiveSchedule]:
    retired: list[LiveSchedule] = []
    with engine.begin() as db:
        for schedule in live_schedules(db, namespaces=namespaces, updated_before=started):
            if str(schedule.id) in listed or schedule.applied_without_cluster:
                continue
            if delete_schedule(db, uid=schedule.id, now=datetime.now(UTC)):
                retired.append(schedule)
    return retired
