"""One Schedule resource into the store: validate, check the policy, apply, act on annotations.

``reconcile`` is what every create, update and resume comes down to. It is synchronous
(handlers run it in a thread) and idempotent: the store's ``apply_schedule`` does nothing
for an unchanged spec, and each request annotation is acted on once (``manual``). It
returns an ``Outcome`` (the Ready condition's status, reason and message, what the store
now says, and the Events to post); it never talks to Kubernetes.

An invalid spec changes nothing in the store: a new Schedule gets no row, and an edited one
keeps running its last valid spec until the spec is fixed (as a Deployment keeps its last
good ReplicaSet). A Schedule outside its namespace's policy is retired in the store, so
nothing of it is planned or enqueued. ``DatabaseUnavailable`` propagates: the handler
turns it into a retry with backoff. Every error the spec itself
causes is permanent, ``InvalidSpec``, never retried: what validation refuses, and
whatever applying it still refuses (a ``ValueError`` from the recurrence, a value
PostgreSQL will not store), since retrying the same spec can only fail the same way.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from beatkeeper.policy import Policy
from beatkeeper.problems import SpecError
from beatkeeper.spec import API_VERSION, KIND, ScheduleManifest, Validated, validate_manifest
from beatkeeper.store import Engine, backfills
from beatkeeper.store.schedules import apply_schedule, delete_schedule
from beatkeeper_operator.annotations import BACKFILL_ANNOTATION, TRIGGER_ANNOTATION
from beatkeeper_operator.manual import Notice, act_on, requested
from beatkeeper_operator.status import Observation, load_observations

__all__ = [
    "BACKFILL_ANNOTATION",
    "MAX_BACKFILL",
    "TRIGGER_ANNOTATION",
    "Notice",
    "Outcome",
    "forget",
    "reconcile",
    "validate_resource",
]

#: A backfill window with more occurrences than this is refused (an Event says so).
MAX_BACKFILL = backfills.MAX_BACKFILL


@dataclass(frozen=True)
class Outcome:
    """What reconciling one Schedule found: the Ready condition and the store's view."""

    ready: bool
    reason: str
    message: str
    observation: Observation | None = None
    notices: list[Notice] = field(default_factory=list)
    resumed: str | None = None  # the resume token acted on, for status.lastResume


def validate_resource(body: Mapping[str, Any], *, now: datetime) -> Validated:
    """``validate_manifest`` of a Schedule object as the API server holds it.

    Only apiVersion, kind, metadata and spec count (status and the rest are the server's);
    the reconcile and the admission webhook both judge a Schedule by this.
    """
    document = {
        "apiVersion": body.get("apiVersion", API_VERSION),
        "kind": body.get("kind", KIND),
        "metadata": dict(body.get("metadata") or {}),
        "spec": body.get("spec"),
    }
    return validate_manifest(document, now=now)


def reconcile(engine: Engine, body: Mapping[str, Any], *, policy: Policy, now: datetime) -> Outcome:
    """Make the store match one Schedule resource; see the module docstring."""
    try:
        manifest = validate_resource(body, now=now).manifest
    except SpecError as exc:
        return _invalid(str(exc))
    last_resume = (body.get("status") or {}).get("lastResume")
    try:
        return _apply(engine, manifest, policy=policy, last_resume=last_resume, now=now)
    except ValueError as exc:  # SpecError (a value PostgreSQL refused too), RecurrenceError
        return _invalid(" ".join(str(exc).split()))


def _invalid(message: str) -> Outcome:
    return Outcome(
        False, "InvalidSpec", message, notices=[Notice("Warning", "InvalidSpec", message)]
    )


def _apply(
    engine: Engine,
    manifest: ScheduleManifest,
    *,
    policy: Policy,
    last_resume: str | None,
    now: datetime,
) -> Outcome:
    meta, spec = manifest.metadata, manifest.spec
    uid = uuid.UUID(meta.uid) if meta.uid else None
    refusal = policy.refusal(namespace=meta.namespace, task=spec.task, queue=spec.queue)
    if refusal is not None:
        with engine.begin() as db:
            delete_schedule(db, uid=uid, namespace=meta.namespace, name=meta.name, now=now)
        return Outcome(
            False, "TaskNotAllowed", refusal, notices=[Notice("Warning", "TaskNotAllowed", refusal)]
        )
    with engine.begin() as db:
        applied = apply_schedule(db, manifest, now=now)
        done = act_on(
            db, meta.namespace, meta.name, meta.annotations, last_resume=last_resume, now=now
        )
        notices = done.notices
        # A row created just now under a new uid has no runs unless an annotation planned
        # one: creating thousands of Schedules then costs no query on the runs table.
        fresh = applied.action in {"created", "replaced"} and not requested(meta.annotations)
        seen = load_observations(db, [applied.id], with_runs=not fresh).get(applied.id)
    if seen is None:  # pragma: no cover (apply_schedule just made the row live)
        return Outcome(False, "Unknown", "the schedule is not in the database", notices=notices)
    ready, reason, message = readiness(seen)
    return Outcome(ready, reason, message, observation=seen, notices=notices, resumed=done.resumed)


def readiness(seen: Observation) -> tuple[bool, str, str]:
    """Ready's status, reason and message for a schedule the store holds."""
    if seen.paused_reason:
        return False, "PausedAfterFailures", seen.paused_reason
    if seen.suspended:
        return True, "Suspended", "spec.suspend is true: no new runs are planned"
    if not seen.next_run_times:
        return True, "Finished", "no occurrences are left to plan"
    return True, "Scheduled", f"planned in the database: {seen.trigger}"


def forget(engine: Engine, *, uid: str | None, namespace: str, name: str, now: datetime) -> bool:
    """Retire the schedule of a deleted resource: planned runs cancelled, history kept."""
    with engine.begin() as db:
        if uid:
            return delete_schedule(db, uid=uuid.UUID(uid), now=now)
        return delete_schedule(db, namespace=namespace, name=name, now=now)
