"""The run state machine: which states a run may be in and which moves between them are legal.

A run is one occurrence of one schedule. It is born ``planned`` and moves along these edges:

    planned  → enqueued | running | skipped | missed | expired | cancelled
    enqueued → running | missed | expired | cancelled | failed
    running  → succeeded | failed | cancelled
    failed   → retrying | dead
    retrying → enqueued | running | cancelled

What the states mean:

- ``planned``: the occurrence is committed to the database and waits until ``due_at``
  (its nominal time plus jitter) to be published.
- ``enqueued``: a Celery message was published for the current attempt.
- ``running``: a worker started the current attempt.
- ``succeeded``: the task returned.
- ``failed``: the attempt raised. For a schedule without retries (``retry.maxAttempts`` of 1,
  the default) this is final. With ``retry.maxAttempts > 1`` a failed attempt moves on: to
  ``retrying`` while attempts are left, or to ``dead`` when the last attempt failed.
- ``retrying``: the next attempt waits in the database until ``due_at`` (never as a Celery
  ETA), then goes back to ``enqueued`` on the same run row.
- ``dead``: every attempt failed; the run is dead-lettered and may be replayed as a new run.
- ``skipped``: not started on purpose (``concurrencyPolicy: Forbid``, ``missedRuns: Skip``,
  an excluded date, a suspended schedule).
- ``missed``: could not start within ``startingDeadline`` (or was lost to downtime).
- ``expired``: its Celery ``expires`` passed before a worker took it.
- ``cancelled``: revoked by a user or by ``concurrencyPolicy: Replace``, or not published
  because the tenancy policy forbids its task in its namespace.

``planned → running`` and ``retrying → running`` exist because Beat publishes first and
records ``enqueued`` after the broker took the message (a run is never marked enqueued for a
message that was not sent): a fast worker can start the attempt in between, and its start
must not be refused. Beat's own ``→ enqueued`` then finds the run already running and changes
nothing, which is the conditional UPDATE doing its job.

``enqueued → failed`` exists because a worker can refuse a message it cannot run at all (an
unknown task name) without ever starting it.

This module is pure: it imports nothing but the standard library and does no I/O. The store
(``beatkeeper.store.runs``) applies these rules to the database as one conditional UPDATE
per transition; nothing here may learn about SQL, Celery or Kubernetes.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType

__all__ = [
    "ACTIVE",
    "FINAL",
    "TRANSITIONS",
    "RunState",
    "can_transition",
    "describe_transition",
    "sources_for",
    "targets_from",
]


class RunState(StrEnum):
    """The state of one run; the values are what the ``runs.state`` column stores."""

    PLANNED = "planned"
    ENQUEUED = "enqueued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    RETRYING = "retrying"
    DEAD = "dead"
    SKIPPED = "skipped"
    MISSED = "missed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


_S = RunState

TRANSITIONS: Mapping[RunState, frozenset[RunState]] = MappingProxyType(
    {
        _S.PLANNED: frozenset(
            {_S.ENQUEUED, _S.RUNNING, _S.SKIPPED, _S.MISSED, _S.EXPIRED, _S.CANCELLED}
        ),
        _S.ENQUEUED: frozenset({_S.RUNNING, _S.MISSED, _S.EXPIRED, _S.CANCELLED, _S.FAILED}),
        _S.RUNNING: frozenset({_S.SUCCEEDED, _S.FAILED, _S.CANCELLED}),
        _S.FAILED: frozenset({_S.RETRYING, _S.DEAD}),
        _S.RETRYING: frozenset({_S.ENQUEUED, _S.RUNNING, _S.CANCELLED}),
        _S.SUCCEEDED: frozenset(),
        _S.DEAD: frozenset(),
        _S.SKIPPED: frozenset(),
        _S.MISSED: frozenset(),
        _S.EXPIRED: frozenset(),
        _S.CANCELLED: frozenset(),
    }
)
"""Every legal move, keyed by the state it leaves."""

ACTIVE: frozenset[RunState] = frozenset({_S.ENQUEUED, _S.RUNNING, _S.RETRYING})
"""States of a run that holds its schedule's slot (what ``concurrencyPolicy`` looks at).

``planned`` is not active: it has not been handed to Celery yet.
"""

FINAL: frozenset[RunState] = frozenset(
    {_S.SUCCEEDED, _S.FAILED, _S.DEAD, _S.SKIPPED, _S.MISSED, _S.EXPIRED, _S.CANCELLED}
)
"""States a run may end in. ``failed`` is final only when no retry follows it."""

_SOURCES: Mapping[RunState, frozenset[RunState]] = MappingProxyType(
    {
        target: frozenset(src for src, targets in TRANSITIONS.items() if target in targets)
        for target in RunState
    }
)


def targets_from(source: RunState) -> frozenset[RunState]:
    """The states a run in ``source`` may move to."""
    return TRANSITIONS[source]


def sources_for(target: RunState) -> frozenset[RunState]:
    """The states a run may be in to move to ``target`` (empty for ``planned``)."""
    return _SOURCES[target]


def can_transition(source: RunState, target: RunState) -> bool:
    """Whether ``source → target`` is a legal move."""
    return target in TRANSITIONS[source]


def describe_transition(source: RunState, target: RunState) -> str:
    """One sentence saying whether ``source → target`` is legal and, if not, why."""
    if can_transition(source, target):
        return f"{source} → {target} is a legal transition"
    if not TRANSITIONS[source]:
        return f"{source} is a final state: a {source} run never changes again"
    allowed = ", ".join(sorted(sources_for(target))) or "nothing (runs are born in it)"
    return (
        f"{source} → {target} is not a transition: {target} is reached from {allowed}, "
        f"and {source} moves on only to {', '.join(sorted(TRANSITIONS[source]))}"
    )
