"""One background loop that keeps every Schedule's status a few seconds behind the database.

Every ``refresh_interval`` seconds it asks PostgreSQL which schedules changed since the
last poll (``schedules.updated_at`` or ``runs.updated_at`` newer than the poll's database
time, with a small overlap for late commits), loads those in batches, and patches the
status of only the schedules whose fields differ from what the resource shows
(``Runtime.served``: what the handlers saw and wrote, and what this loop wrote since). An
idle cycle over 10,000 unchanged schedules therefore costs one small query and no API
request. Schedules the handlers have not reconciled (other namespaces, not listed yet)
are left alone; retired rows are followed too (a Schedule refused by the policy still
shows the runs it already started).

It also posts the Events a user should notice (each once, though the overlap reads it
again): a run dead after its last attempt, a missed run, a schedule paused after failures.
A database outage, or a database that does not answer within ``database_timeout``, makes
the operator unready and the loop retry; it never stops the operator. Every
``sweep_interval`` it runs the orphan sweep (``sweep``). It must not touch the spec-owned
status fields (``observedGeneration``, ``trigger``) and writes ``Ready`` only for a pause.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from beatkeeper.states import RunState
from beatkeeper.store import Connection, DatabaseUnavailable
from beatkeeper.store import status as stored
from beatkeeper_operator import kube, reconcile, sweep
from beatkeeper_operator.runtime import Runtime, Served
from beatkeeper_operator.status import (
    Observation,
    load_observations,
    previous_ready,
    ready_condition,
    run_fields,
    status_patch,
)

__all__ = ["Changes", "refresh_once", "run"]

OVERLAP = timedelta(seconds=5)
BATCH = 500
#: Ready reasons the database decides; others (InvalidSpec, ...) belong to the handler.
_STORE_REASONS = frozenset({"Scheduled", "Suspended", "Finished", "PausedAfterFailures"})
_NOTABLE = {
    RunState.DEAD.value: ("RunDead", "run {id} of {planned} failed its last attempt: {error}"),
    RunState.MISSED.value: ("RunMissed", "run {id} of {planned} was missed: {error}"),
}
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Changes:
    """What changed in the store since the last poll."""

    polled_at: datetime
    observations: dict[uuid.UUID, Observation]
    notable: list[stored.ChangedRun]  # runs that went dead or missed


async def run(runtime: Runtime) -> None:
    """Poll forever; an unreachable database is logged and retried next interval.

    Every ``sweep_interval`` seconds it also retires rows whose resource is gone (``sweep``).
    """
    since: datetime | None = None
    swept_at = time.monotonic()
    while True:
        try:
            since = await refresh_once(runtime, since=since)
            runtime.database_ok = True
            if time.monotonic() - swept_at >= runtime.config.sweep_interval:
                swept_at = time.monotonic()
                await sweep.sweep_once(runtime)
        except DatabaseUnavailable as exc:
            runtime.database_ok = False
            logger.warning("status refresh skipped: %s", exc)
        except Exception:  # a bug must not stop status updates for everyone
            logger.exception("status refresh failed")
        await asyncio.sleep(runtime.config.refresh_interval)


async def refresh_once(runtime: Runtime, *, since: datetime | None) -> datetime:
    """One poll: patch what changed after ``since``; returns the next ``since``."""
    changes = await runtime.in_database(_changes, runtime, since)
    for seen in changes.observations.values():
        await _refresh(runtime, seen)
    for row in changes.notable:
        await _notable_event(runtime, row)
    return changes.polled_at


def _changes(runtime: Runtime, since: datetime | None) -> Changes:
    with runtime.engine.connect() as db:
        polled_at = stored.database_now(db)
        if since is None:  # the resume handlers bring every status up to date at start-up
            return Changes(polled_at, {}, [])
        after = since - OVERLAP
        versions = stored.schedules_edited_after(db, after)
        wanted = stored.schedules_with_runs_after(db, after)
        # A row seen at this updated_at already is only in the overlap again: skip it
        # unless its runs changed (they are not versioned, so they are always re-read).
        loaded = runtime.loaded_versions
        wanted.update(key for key, at in versions.items() if loaded.get(key) != at)
        ids = list(wanted)
        runtime.loaded_versions = {
            **{key: at for key, at in loaded.items() if at > after},
            **versions,
        }
        found: dict[uuid.UUID, Observation] = {}
        for start in range(0, len(ids), BATCH):
            # Retired rows too: their runs already started go on and show in ``active``.
            found.update(load_observations(db, ids[start : start + BATCH], retired=True))
        notable = _notable_runs(runtime, db, after)
    return Changes(polled_at, found, notable)


def _notable_runs(runtime: Runtime, db: Connection, after: datetime) -> list[stored.ChangedRun]:
    """Runs gone dead or missed since ``after`` (the overlap too), each reported once.

    A run's ``updated_at`` is its writer's clock when the statement ran, so a run that
    committed just after a poll can carry a time before it: without the overlap its Event
    was lost.
    """
    found = stored.runs_now_in(db, _NOTABLE, after=after)
    noted = {key: at for key, at in runtime.noted_runs.items() if at > after}
    fresh = [row for row in found if noted.get(row.id) != row.updated_at]
    runtime.noted_runs = {**noted, **{row.id: row.updated_at for row in found}}
    return fresh


def _reference(uid: uuid.UUID, served: Served) -> dict[str, Any]:
    """The Schedule as an Event names it."""
    return {"uid": str(uid), "namespace": served.namespace, "name": served.name}


async def _refresh(runtime: Runtime, seen: Observation) -> None:
    served = runtime.served.get(seen.id)
    if served is None:  # not a Schedule this operator serves (or not reconciled yet)
        return
    current = served.status
    desired = run_fields(seen)
    ready = previous_ready(current)
    paused_now = False
    if ready and ready.get("reason") in _STORE_REASONS and seen.generation == served.generation:
        status, reason, message = reconcile.readiness(seen)
        if reason != ready.get("reason"):
            desired["conditions"] = [
                ready_condition(
                    status=status,
                    reason=reason,
                    message=message,
                    generation=served.generation,
                    previous=ready,
                    now=datetime.now().astimezone(),
                )
            ]
            paused_now = reason == "PausedAfterFailures"
    patch = status_patch(current, desired)
    if not patch:
        return
    if not await kube.patch_status(
        runtime.kopf_settings, namespace=served.namespace, name=served.name, status=patch
    ):
        runtime.served.pop(seen.id, None)  # the Schedule is gone
        return
    served.status = {**current, **desired}
    if paused_now:
        await kube.post_event(
            runtime.kopf_settings,
            runtime.limiter,
            schedule=_reference(seen.id, served),
            type="Warning",
            reason="PausedAfterFailures",
            message=(
                f"paused: {seen.paused_reason}; resume with "
                f"kubectl beatkeeper resume {served.name} -n {served.namespace} (or edit the spec)"
            ),
        )


async def _notable_event(runtime: Runtime, row: stored.ChangedRun) -> None:
    served = runtime.served.get(row.schedule_id)
    if served is None:
        return
    reason, template = _NOTABLE[row.state]
    message = template.format(id=row.id, planned=row.planned_at.isoformat(), error=row.error or "")
    await kube.post_event(
        runtime.kopf_settings,
        runtime.limiter,
        schedule=_reference(row.schedule_id, served),
        type="Warning",
        reason=reason,
        message=message.rstrip(": "),
    )
