"""Apply and delete Schedules in the store: the one reconcile entry point.

The operator, `beatkeeper apply`/`delete` and `beatkeeper dev` all call `apply_schedule`
and `delete_schedule`, so a manifest means the same wherever it came from. Rows are keyed
by `metadata.uid`: delete-and-recreate of a resource is a new schedule with fresh history.
A uid is never moved to another namespace/name (`UidConflictError`), and a manifest without one
gets a random id, never one derived from its name.

Planning rules (ARCHITECTURE.md invariant 6): creating or editing a schedule plans its next
occurrence strictly after *now*; an edit never fires a catch-up run for what the old spec
would have run. Re-applying an unchanged spec changes nothing. An edit also lifts a pause
that `pauseAfterFailures` put on the schedule: changing the spec is the user taking
charge. Deleting cancels runs not yet handed to a worker and keeps every run as history.

Functions take a Connection inside the caller's transaction and never commit. A value
validation let through but PostgreSQL refuses is a ``SpecError`` too
(``RefusedByDatabaseError``): retrying the same spec can only fail the same way.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import DataError

from beatkeeper.problems import Problem, SpecError
from beatkeeper.recurrence import Recurrence
from beatkeeper.spec import ScheduleManifest, ScheduleSpec, recurrence_of
from beatkeeper.states import RunState
from beatkeeper.store.models import runs, schedules
from beatkeeper.store.notifications import notify
from beatkeeper.store.runs import transition_many

#: Before ids were random, a manifest without a uid got uuid5(this, "namespace/name").
_LEGACY_UID_NAMESPACE = uuid.UUID("5b0c6f4e-2d7c-4c83-9a51-0a9f3f1f6e21")
_LOCAL_VERSION = 8

Action = Literal["created", "updated", "unchanged", "restored", "replaced"]


@dataclass(frozen=True)
class Applied:
    """What `apply_schedule` did to one schedule."""

    id: uuid.UUID
    namespace: str
    name: str
    action: Action
    next_run_at: datetime | None
    trigger: str


class UidConflictError(SpecError):
    """`metadata.uid` names another Schedule's row (a manifest copied with its uid)."""

    def __init__(self, uid: uuid.UUID, owner: str, applied: str) -> None:
        message = (
            f"{uid} belongs to Schedule {owner}, not {applied}: "
            "remove metadata.uid (copied from another Schedule?)"
        )
        super().__init__([Problem("metadata.uid", message)])


class RefusedByDatabaseError(SpecError):
    """PostgreSQL refused a value of the spec (the transaction must be rolled back)."""

    def __init__(self, reason: str) -> None:
        super().__init__([Problem("", f"the database refused the spec: {reason}")])


def spec_document(spec: ScheduleSpec) -> dict[str, Any]:
    """The spec as stored: every field, defaults included, in manifest spelling."""
    return spec.model_dump(mode="json", by_alias=True)


def spec_hash(document: dict[str, Any]) -> str:
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def apply_schedule(db: Connection, manifest: ScheduleManifest, *, now: datetime) -> Applied:
    """Create or update the schedule of a validated manifest; idempotent."""
    try:
        return _apply(db, manifest, now=now)
    except DataError as exc:
        lines = str(exc.orig).strip().splitlines()
        raise RefusedByDatabaseError(lines[0] if lines else type(exc.orig).__name__) from None


def apply_alone(db: Connection, manifest: ScheduleManifest, *, now: datetime) -> Applied:
    """``apply_schedule`` in a savepoint: a refused manifest leaves the rest applied."""
    with db.begin_nested():
        return apply_schedule(db, manifest, now=now)


def _apply(db: Connection, manifest: ScheduleManifest, *, now: datetime) -> Applied:
    meta = manifest.metadata
    uid = uuid.UUID(meta.uid) if meta.uid else _id_for_name(db, meta.namespace, meta.name)
    document = spec_document(manifest.spec)
    digest = spec_hash(document)
    row = db.execute(select(schedules).where(schedules.c.id == uid).with_for_update()).first()
    if row is not None and (row.namespace, row.name) != (meta.namespace, meta.name):
        # Moving it would carry its planned runs and history into another name/namespace.
        raise UidConflictError(uid, f"{row.namespace}/{row.name}", f"{meta.namespace}/{meta.name}")
    replaced = _retire_namesake(db, uid, meta.namespace, meta.name, now=now)
    if row is not None and row.deleted_at is None and row.spec_hash == digest:
        return Applied(uid, meta.namespace, meta.name, "unchanged", row.next_run_at, row.trigger)
    created_at = row.created_at if row is not None else (meta.creation_timestamp or now)
    recurrence = recurrence_of(manifest.spec, seed=str(uid), created_at=created_at)
    planned = row.planned_count if row is not None and row.deleted_at is None else 0
    next_run = recurrence.next_after(now, planned_so_far=planned)
    trigger = recurrence.trigger.describe()
    values: dict[str, Any] = {
        "namespace": meta.namespace,
        "name": meta.name,
        "generation": meta.generation or ((row.generation + 1) if row is not None else 1),
        "spec": document,
        "spec_hash": digest,
        "task": manifest.spec.task,
        "queue": manifest.spec.queue,
        "zone": manifest.spec.time_zone,
        "trigger": trigger,
        "suspended": manifest.spec.suspend,
        "paused_reason": None,
        "consecutive_failures": 0,
        "planned_count": planned,
        "next_run_at": next_run,
        "next_due_at": _due(recurrence, next_run),
        "updated_at": now,
        "deleted_at": None,
        **_held_back_by(manifest),
    }
    if row is None:
        db.execute(insert(schedules).values(id=uid, created_at=created_at, **values))
        action: Action = "replaced" if replaced else "created"
    else:
        db.execute(update(schedules).where(schedules.c.id == uid).values(**values))
        action = "restored" if row.deleted_at is not None else "updated"
    notify(db, str(uid))  # Beat re-reads when it next wakes; delivered on commit
    return Applied(uid, meta.namespace, meta.name, action, next_run, trigger)


@dataclass(frozen=True)
class LiveSchedule:
    """A schedule the store still plans, as far as the orphan sweep needs it."""

    id: uuid.UUID
    namespace: str
    name: str

    @property
    def applied_without_cluster(self) -> bool:
        """Applied with no ``metadata.uid`` (`beatkeeper apply`, `beatkeeper dev`)."""
        return applied_without_cluster(self.id, self.namespace, self.name)


def live_schedules(
    db: Connection, *, namespaces: tuple[str, ...] = (), updated_before: datetime
) -> list[LiveSchedule]:
    """Live schedules (in ``namespaces``; all when empty) last applied before a moment."""
    query = select(schedules.c.id, schedules.c.namespace, schedules.c.name).where(
        schedules.c.deleted_at.is_(None), schedules.c.updated_at < updated_before
    )
    if namespaces:
        query = query.where(schedules.c.namespace.in_(namespaces))
    return [LiveSchedule(row.id, row.namespace, row.name) for row in db.execute(query)]


def delete_schedule(
    db: Connection,
    *,
    now: datetime,
    uid: uuid.UUID | None = None,
    namespace: str | None = None,
    name: str | None = None,
) -> bool:
    """Mark a schedule deleted (by uid, or by namespace and name); False if none was live."""
    query = select(schedules.c.id).where(schedules.c.deleted_at.is_(None))
    if uid is not None:
        query = query.where(schedules.c.id == uid)
    else:
        query = query.where(schedules.c.namespace == namespace, schedules.c.name == name)
    found = db.execute(query.with_for_update()).scalar()
    if found is None:
        return False
    _retire(db, found, now=now)
    notify(db, str(found))
    return True


def _retire(db: Connection, uid: uuid.UUID, *, now: datetime) -> None:
    db.execute(
        update(schedules)
        .where(schedules.c.id == uid)
        .values(deleted_at=now, next_run_at=None, next_due_at=None, updated_at=now)
    )
    pending = db.execute(
        select(runs.c.id).where(
            runs.c.schedule_id == uid,
            runs.c.state.in_([RunState.PLANNED.value, RunState.RETRYING.value]),
        )
    ).scalars()
    transition_many(db, list(pending), RunState.CANCELLED, now=now, error="schedule deleted")


def _retire_namesake(
    db: Connection, uid: uuid.UUID, namespace: str, name: str, *, now: datetime
) -> bool:
    """A new resource under a live name (delete-and-recreate) retires the old row."""
    old = db.execute(
        select(schedules.c.id)
        .where(
            schedules.c.namespace == namespace,
            schedules.c.name == name,
            schedules.c.deleted_at.is_(None),
            schedules.c.id != uid,
        )
        .with_for_update()
    ).scalar()
    if old is None:
        return False
    _retire(db, old, now=now)
    return True


def _id_for_name(db: Connection, namespace: str, name: str) -> uuid.UUID:
    """Without a uid: the id of that name's live schedule, else of its last deleted one if
    that was applied without a cluster too (re-applying restores it, history and all), else
    a new random one.

    Random, not derived from the name: an id anyone can compute for another namespace's
    schedule is an id a forged message or a copied manifest can aim at.
    """
    rows = db.execute(
        select(schedules.c.id, schedules.c.deleted_at)
        .where(schedules.c.namespace == namespace, schedules.c.name == name)
        .order_by(schedules.c.deleted_at.desc().nulls_first())
    )
    for row in rows:
        if row.deleted_at is None or applied_without_cluster(row.id, namespace, name):
            return uuid.UUID(str(row.id))
    return new_local_uid()


def new_local_uid() -> uuid.UUID:
    """A random id for a schedule applied without a cluster, marked as such by its UUID
    version (8, "custom"; Kubernetes gives version 4), so the operator's orphan sweep can
    leave it alone without the id being guessable."""
    value = int.from_bytes(os.urandom(16), "big")
    value = (value & ~(0xF << 76)) | (_LOCAL_VERSION << 76)
    value = (value & ~(0xC000 << 48)) | (0x8000 << 48)  # the RFC 4122 variant
    return uuid.UUID(int=value)


def applied_without_cluster(uid: uuid.UUID, namespace: str, name: str) -> bool:
    """Whether schedule ``uid`` was applied with no ``metadata.uid``: a ``new_local_uid``, or
    the name-derived id such schedules had before ids were random."""
    legacy = uuid.uuid5(_LEGACY_UID_NAMESPACE, f"{namespace}/{name}")
    return uid.version == _LOCAL_VERSION or uid == legacy


def _due(recurrence: Recurrence, planned: datetime | None) -> datetime | None:
    return None if planned is None else planned + recurrence.jitter_for(planned)


def _held_back_by(manifest: ScheduleManifest) -> dict[str, Any]:
    """The columns Beat's publishing claim reads for Queue and ``rateLimit``."""
    limit = manifest.spec.rate_limit
    return {
        "queued": manifest.spec.concurrency_policy == "Queue",
        "rate_key": limit.key if limit else None,
        "rate_runs": limit.runs if limit else None,
        "rate_per": limit.per if limit else None,
    }
