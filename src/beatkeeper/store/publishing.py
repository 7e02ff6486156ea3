"""The named queries of publishing: lock due runs, spend rate budgets, mark them enqueued.

``claim_publishable_runs`` locks due ``planned``/``retrying`` runs (``FOR UPDATE SKIP
LOCKED``); the caller publishes them and, in the same transaction, ``mark_enqueued`` moves
the sent ones on. Publishing only rows locked by the publisher is what makes "no duplicate,
no gap" hold for any number of replicas: a run is published by whoever locked it, and a run
whose publisher died is unlocked and due, so the next tick of any replica publishes it
(invariant 2). A run that must wait although it is due (``WAITS_ITS_TURN``,
``OUT_OF_BUDGET``) is passed over and stays ``planned``, in order.

A message can still be lost after the broker took it: kombu's Redis transport pops a
message before it records it as unacknowledged, so a worker killed (or a Redis restarted)
in between drops it for good. ``claim_unstarted_runs`` finds runs ``enqueued`` long ago
and never started, for Beat to publish again (``mark_republished``); a worker drops the
copy if the first message did arrive (invariant 3).

This module never commits, never talks to a broker and never reads the clock: callers pass
``now``.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, text

from beatkeeper.states import RunState
from beatkeeper.store.runs import transition_many

__all__ = [
    "OUT_OF_BUDGET",
    "SENDS_KEPT",
    "WAITS_ITS_TURN",
    "PublishableRun",
    "budget_spent_since",
    "claim_publishable_runs",
    "claim_unstarted_runs",
    "mark_enqueued",
    "mark_republished",
    "schedule_specs",
    "spend_budgets",
]


@dataclass(frozen=True)
class PublishableRun:
    """A due run locked by ``claim_publishable_runs`` until the caller's transaction ends."""

    id: uuid.UUID
    schedule_id: uuid.UUID
    planned_at: datetime
    due_at: datetime
    attempt: int
    max_attempts: int
    task: str
    state: str
    spec_hash: str
    namespace: str
    name: str
    rate_key: str | None = None  # its schedule's rateLimit, if it has one
    rate_runs: int | None = None
    rate_per: timedelta | None = None


# A run that must wait although it is due: under concurrencyPolicy: Queue while another run
# of its schedule is unfinished or planned before it; under a rateLimit while its key has
# sent ``rate_runs`` runs in the last ``rate_per``. It stays planned, in order, meanwhile.
WAITS_ITS_TURN = """
    (s.queued AND EXISTS (
        SELECT 1 FROM runs AS o
        WHERE o.schedule_id = r.schedule_id AND o.id <> r.id
          AND (o.state IN ('enqueued', 'running', 'retrying')
               OR (o.state = 'planned' AND o.planned_at < r.planned_at))))
"""
OUT_OF_BUDGET = """
    (s.rate_key IS NOT NULL AND s.rate_runs <= (
        SELECT count(*) FROM rate_sends AS w
        WHERE w.namespace = s.namespace AND w.key = s.rate_key
          AND w.sent_at > CAST(:now AS timestamptz) - s.rate_per))
"""

_PUBLISHABLE = text(f"""
    SELECT r.id, r.schedule_id, r.planned_at, r.due_at, r.attempt, r.max_attempts, r.task,
           r.state, s.spec_hash, s.namespace, s.name, s.rate_key, s.rate_runs, s.rate_per
    FROM runs AS r JOIN schedules AS s ON s.id = r.schedule_id
    WHERE r.state IN ('planned', 'retrying') AND r.due_at <= :now
      AND NOT {WAITS_ITS_TURN} AND NOT {OUT_OF_BUDGET}
    ORDER BY r.due_at, r.planned_at
    LIMIT :limit
    FOR UPDATE OF r SKIP LOCKED
""")  # noqa: S608 (constant SQL fragments, no input)


def claim_publishable_runs(db: Connection, *, now: datetime, limit: int) -> list[PublishableRun]:
    """Lock up to ``limit`` due planned or retrying runs no other replica holds."""
    rows = db.execute(_PUBLISHABLE, {"now": now, "limit": limit})
    return [PublishableRun(*row) for row in rows]  # by position, as planning's claim


def mark_enqueued(
    db: Connection,
    sent: Sequence[uuid.UUID],
    dropped: Mapping[tuple[RunState, str], Sequence[uuid.UUID]],
    *,
    sent_at: datetime,
    now: datetime,
) -> None:
    """Record the outcome of a published batch: ``sent`` runs ``enqueued`` (at ``sent_at``,
    when the broker took them), each ``dropped`` run in its state with its reason."""
    transition_many(db, sent, RunState.ENQUEUED, now=sent_at)
    for (state, reason), ids in dropped.items():
        transition_many(db, ids, state, now=now, error=reason)


# --- rate limits ---------------------------------------------------------------------------

# Upserting the budget row locks it (a plain INSERT … DO NOTHING would not lock a row that
# exists): every replica sending under this key waits here until the holder commits.
_LOCK_BUDGET = text("""
    INSERT INTO rate_budgets (namespace, key) VALUES (:namespace, :key)
    ON CONFLICT (namespace, key) DO UPDATE SET key = excluded.key
""")
_FORGET_SENDS = text("""
    DELETE FROM rate_sends
    WHERE namespace = :namespace AND key = :key AND sent_at <= CAST(:now AS timestamptz) - :per
""")
_SENDS_SINCE = text("""
    SELECT count(*) FROM rate_sends
    WHERE namespace = :namespace AND key = :key AND sent_at > :since
""")
_SENDS_FROM = text("""
    SELECT count(*) FROM rate_sends
    WHERE namespace = :namespace AND key = :key AND sent_at >= :since
""")
_RECORD_SENDS = text("""
    INSERT INTO rate_sends (namespace, key, sent_at, run_id)
    SELECT :namespace, :key, :now, unnest(CAST(:ids AS uuid[]))
""")


SENDS_KEPT = timedelta(days=1)
"""Sends are kept at least this long (longer than a window needs), so a run recorded missed
after a long wait can still tell whether its rate limit was why."""


def spend_budgets(
    db: Connection, runs: Sequence[PublishableRun], *, now: datetime
) -> set[uuid.UUID]:
    """Record the sends of ``runs`` against their rate limits; the ids held back instead.

    Per (namespace, key), in a fixed order so two replicas never wait for each other in a
    circle: lock the budget row, count the sends in the window, let the earliest runs through
    up to the budget. Held runs stay ``planned``; the caller must not send them.
    """
    groups: dict[tuple[str, str], list[PublishableRun]] = {}
    for run in runs:
        if run.rate_key is not None:
            groups.setdefault((run.namespace, run.rate_key), []).append(run)
    held: set[uuid.UUID] = set()
    for (namespace, key), members in sorted(groups.items()):
        per = max(r.rate_per for r in members if r.rate_per is not None)
        budget = min(r.rate_runs for r in members if r.rate_runs is not None)
        where = {"namespace": namespace, "key": key}
        db.execute(_LOCK_BUDGET, where)
        db.execute(_FORGET_SENDS, {**where, "now": now, "per": max(per, SENDS_KEPT)})
        spent = db.execute(_SENDS_SINCE, {**where, "since": now - per}).scalar_one()
        chosen = members[: max(0, budget - spent)]
        held.update(r.id for r in members[len(chosen) :])
        if chosen:
            db.execute(_RECORD_SENDS, {**where, "now": now, "ids": [r.id for r in chosen]})
    return held


def budget_spent_since(db: Connection, run: PublishableRun, *, since: datetime) -> bool:
    """Whether ``run``'s rate limit sent its whole budget of other runs from ``since`` on."""
    if run.rate_key is None or run.rate_runs is None:
        return False
    where = {"namespace": run.namespace, "key": run.rate_key, "since": since}
    spent = int(db.execute(_SENDS_FROM, where).scalar_one())
    return spent >= run.rate_runs


_LOST = text("""
    SELECT r.id, r.schedule_id, r.planned_at, r.due_at, r.attempt, r.max_attempts, r.task,
           r.state, s.spec_hash, s.namespace, s.name
    FROM runs AS r JOIN schedules AS s ON s.id = r.schedule_id
    WHERE r.state = 'enqueued' AND r.enqueued_at <= :before
    ORDER BY r.enqueued_at
    LIMIT :limit
    FOR UPDATE OF r SKIP LOCKED
""")


def claim_unstarted_runs(
    db: Connection, *, enqueued_before: datetime, limit: int
) -> list[PublishableRun]:
    """Lock up to ``limit`` runs ``enqueued`` before then and never started, oldest first."""
    rows = db.execute(_LOST, {"before": enqueued_before, "limit": limit})
    return [PublishableRun(*row) for row in rows]  # by position, as planning's claim


_REPUBLISHED = text("""
    UPDATE runs SET enqueued_at = :now, updated_at = :now
    WHERE id = ANY(CAST(:ids AS uuid[])) AND state = 'enqueued'
""")


def mark_republished(db: Connection, run_ids: Sequence[uuid.UUID], *, now: datetime) -> None:
    """The runs' messages were sent again: their wait starts over (not a state transition)."""
    if run_ids:
        db.execute(_REPUBLISHED, {"ids": list(run_ids), "now": now})


_SPECS = text(
    "SELECT id, spec::text AS spec_json FROM schedules WHERE id = ANY(CAST(:ids AS uuid[]))"
)


def schedule_specs(db: Connection, schedule_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
    """The stored spec (JSON text) of each schedule, for runs planned by another tick."""
    if not schedule_ids:
        return {}
    rows = db.execute(_SPECS, {"ids": list(schedule_ids)})
    return {row.id: row.spec_json for row in rows}
