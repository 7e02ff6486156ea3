"""The named queries of a Beat tick: claim due schedules, record their runs, publish them.

One tick of any Beat replica is: ``claim_due_schedules`` (``FOR UPDATE SKIP LOCKED``, so
replicas split the due rows instead of waiting for each other), ``decisions.planning.decide``
for each claimed schedule (pure: which occurrences become runs, in which state, and where
``next_run_at`` moves), ``record_plans`` (insert the runs, ``ON CONFLICT (schedule_id,
planned_at) DO NOTHING``, and advance the schedules, in one round trip), commit; then
``claim_publishable_runs`` locks due ``planned``/``retrying`` runs, the caller publishes them
and moves them to ``enqueued`` in the same transaction. Publishing only rows locked by the
publisher is what makes "no duplicate, no gap" hold for any number of replicas: a run is
published by whoever locked it, and a run whose publisher died is unlocked and due, so the
next tick of any replica publishes it (invariant 2). The unique key, not a lock, keeps an
occurrence from being planned twice (invariant 1).

A message can still be lost after the broker took it: kombu's Redis transport pops a
message before it records it as unacknowledged, so a worker killed (or a Redis restarted)
in between drops it for good. ``claim_unstarted_runs`` finds runs ``enqueued`` long ago
and never started, for Beat to publish again (``mark_republished``); a worker drops the
copy if the first message did arrive (invariant 3).

Every query reads through an index whose size follows what is due (``ix_schedules_due``,
``ix_runs_publishable``, ``ix_runs_enqueued``), so a tick costs what is due, never what
exists. Arrays go in with
``unnest`` so a batch is one statement whatever its size.

This module never commits, never talks to a broker and never reads the clock: callers pass
``now``. It decides nothing either: ``decisions.planning`` says what a due schedule gets.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, text

from beatkeeper.decisions.planning import Advance, DueSchedule, NewRun
from beatkeeper.store.models import NOTIFY_PREFIX

__all__ = [
    "NOTIFY_PREFIX",
    "DueRuns",
    "PublishableRun",
    "Recorded",
    "budget_spent_since",
    "busy_runs",
    "channel_for",
    "claim_due_schedules",
    "claim_publishable_runs",
    "claim_unstarted_runs",
    "count_due_runs",
    "held_runs",
    "mark_republished",
    "next_wake",
    "notify",
    "oldest_unstarted",
    "prune_history",
    "record_plans",
    "schedule_specs",
    "spend_budgets",
]


def channel_for(schema: str) -> str:
    """The LISTEN/NOTIFY channel of a schema (PostgreSQL cuts identifiers at 63 bytes)."""
    return (NOTIFY_PREFIX + schema)[:63]


_NOTIFY = text("SELECT pg_notify(left(:prefix || current_schema(), 63), :payload)")


def notify(db: Connection, payload: str = "") -> None:
    """Wake every Beat of this schema once the caller's transaction commits."""
    db.execute(_NOTIFY, {"prefix": NOTIFY_PREFIX, "payload": payload})


# --- planning ------------------------------------------------------------------------------


_CLAIM = text("""
    SELECT id, namespace, name, spec::text AS spec_json, spec_hash, created_at,
           planned_count, next_run_at, next_due_at
    FROM schedules
    WHERE deleted_at IS NULL AND NOT suspended AND next_due_at IS NOT NULL
      AND next_due_at <= :now
    ORDER BY next_due_at
    LIMIT :limit
    FOR UPDATE SKIP LOCKED
""")


def claim_due_schedules(db: Connection, *, now: datetime, limit: int) -> list[DueSchedule]:
    """Lock up to ``limit`` due schedules that no other replica holds, earliest first."""
    rows = db.execute(_CLAIM, {"now": now, "limit": limit})
    return [DueSchedule(**row._mapping) for row in rows]


# --- recording ---------------------------------------------------------------------------

_RECORD = text("""
    WITH born AS (
        INSERT INTO runs (schedule_id, planned_at, due_at, state, task, max_attempts,
                          finished_at, error)
        SELECT n.schedule_id, n.planned_at, n.due_at, n.state, n.task, n.max_attempts,
               CASE WHEN n.state = 'planned' THEN NULL ELSE CAST(:now AS timestamptz) END,
               n.error
        FROM unnest(CAST(:schedule_ids AS uuid[]), CAST(:planned AS timestamptz[]),
                    CAST(:due AS timestamptz[]), CAST(:states AS text[]),
                    CAST(:tasks AS text[]), CAST(:attempts AS int[]), CAST(:errors AS text[]))
             AS n(schedule_id, planned_at, due_at, state, task, max_attempts, error)
        ON CONFLICT (schedule_id, planned_at) DO NOTHING
        RETURNING state
    ), advanced AS (
        UPDATE schedules AS s
        SET next_run_at = a.next_run_at, next_due_at = a.next_due_at,
            planned_count = a.planned_count,
            last_scheduled_at = coalesce(a.last_scheduled_at, s.last_scheduled_at)
        FROM unnest(CAST(:ids AS uuid[]), CAST(:next_run AS timestamptz[]),
                    CAST(:next_due AS timestamptz[]), CAST(:counts AS int[]),
                    CAST(:last AS timestamptz[]))
             AS a(id, next_run_at, next_due_at, planned_count, last_scheduled_at)
        WHERE s.id = a.id
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM advanced) AS advanced,
           (SELECT count(*) FROM born WHERE state = 'planned') AS planned,
           (SELECT count(*) FROM born) AS born
""")


@dataclass(frozen=True)
class Recorded:
    advanced: int  # schedules moved on
    planned: int  # runs inserted as planned (to be published)
    born: int  # runs inserted in any state; the rest already existed


def record_plans(
    db: Connection, runs: Sequence[NewRun], advances: Sequence[Advance], *, now: datetime
) -> Recorded:
    """Insert ``runs`` (an existing occurrence is left alone) and advance the schedules."""
    row = db.execute(
        _RECORD,
        {
            "now": now,
            "schedule_ids": [r.schedule_id for r in runs],
            "planned": [r.planned_at for r in runs],
            "due": [r.due_at for r in runs],
            "states": [r.state.value for r in runs],
            "tasks": [r.task for r in runs],
            "attempts": [r.max_attempts for r in runs],
            "errors": [r.reason for r in runs],
            "ids": [a.schedule_id for a in advances],
            "next_run": [a.next_run_at for a in advances],
            "next_due": [a.next_due_at for a in advances],
            "counts": [a.planned_count for a in advances],
            "last": [a.last_scheduled_at for a in advances],
        },
    ).one()
    return Recorded(advanced=row.advanced, planned=row.planned, born=row.born)


_BUSY = text("""
    SELECT id, schedule_id, state FROM runs
    WHERE schedule_id = ANY(CAST(:ids AS uuid[]))
      AND state IN ('planned', 'enqueued', 'running', 'retrying')
""")


def busy_runs(
    db: Connection, schedule_ids: Sequence[uuid.UUID]
) -> list[tuple[uuid.UUID, uuid.UUID, str]]:
    """(run id, schedule id, state) of every unfinished run of these schedules."""
    if not schedule_ids:
        return []
    rows = db.execute(_BUSY, {"ids": list(schedule_ids)})
    return [(row.id, row.schedule_id, row.state) for row in rows]


# --- publishing ----------------------------------------------------------------------------


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
_WAITS_ITS_TURN = """
    (s.queued AND EXISTS (
        SELECT 1 FROM runs AS o
        WHERE o.schedule_id = r.schedule_id AND o.id <> r.id
          AND (o.state IN ('enqueued', 'running', 'retrying')
               OR (o.state = 'planned' AND o.planned_at < r.planned_at))))
"""
_OUT_OF_BUDGET = """
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
      AND NOT {_WAITS_ITS_TURN} AND NOT {_OUT_OF_BUDGET}
    ORDER BY r.due_at, r.planned_at
    LIMIT :limit
    FOR UPDATE OF r SKIP LOCKED
""")  # noqa: S608 (constant SQL fragments, no input)


def claim_publishable_runs(db: Connection, *, now: datetime, limit: int) -> list[PublishableRun]:
    """Lock up to ``limit`` due planned or retrying runs no other replica holds."""
    rows = db.execute(_PUBLISHABLE, {"now": now, "limit": limit})
    return [PublishableRun(**row._mapping) for row in rows]


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
    return [PublishableRun(**row._mapping) for row in rows]


_REPUBLISHED = text("""
    UPDATE runs SET enqueued_at = :now, updated_at = :now
    WHERE id = ANY(CAST(:ids AS uuid[])) AND state = 'enqueued'
""")


def mark_republished(db: Connection, run_ids: Sequence[uuid.UUID], *, now: datetime) -> None:
    """The runs' messages were sent again: their wait starts over (not a state transition)."""
    if run_ids:
        db.execute(_REPUBLISHED, {"ids": list(run_ids), "now": now})


_DUE_RUNS = text(f"""
    SELECT count(*) FILTER (WHERE NOT {_WAITS_ITS_TURN} AND NOT {_OUT_OF_BUDGET}) AS ready,
           count(*) FILTER (WHERE {_WAITS_ITS_TURN}) AS queued,
           count(*) FILTER (WHERE NOT {_WAITS_ITS_TURN} AND {_OUT_OF_BUDGET}) AS rate_limited
    FROM runs AS r JOIN schedules AS s ON s.id = r.schedule_id
    WHERE r.state IN ('planned', 'retrying') AND r.due_at <= :now
""")  # noqa: S608 (constant SQL fragments, no input)


@dataclass(frozen=True)
class DueRuns:
    """Due runs not yet published: those ready to go, and those held back (and why)."""

    ready: int
    queued: int  # behind another run of their Queue schedule
    rate_limited: int  # their rateLimit's budget is spent for now


def count_due_runs(db: Connection, *, now: datetime) -> DueRuns:
    """How many planned or retrying runs are due at ``now`` and not yet published."""
    row = db.execute(_DUE_RUNS, {"now": now}).one()
    return DueRuns(ready=row.ready, queued=row.queued, rate_limited=row.rate_limited)


_HELD = text(f"""
    SELECT r.schedule_id,
           count(*) FILTER (WHERE {_WAITS_ITS_TURN}) AS queue,
           count(*) FILTER (WHERE NOT {_WAITS_ITS_TURN} AND {_OUT_OF_BUDGET}) AS rate_limit
    FROM runs AS r JOIN schedules AS s ON s.id = r.schedule_id
    WHERE r.schedule_id = ANY(CAST(:ids AS uuid[]))
      AND r.state IN ('planned', 'retrying') AND r.due_at <= :now
      AND (s.queued OR s.rate_key IS NOT NULL)
    GROUP BY r.schedule_id
""")  # noqa: S608 (constant SQL fragments, no input)


def held_runs(
    db: Connection, schedule_ids: Sequence[uuid.UUID], *, now: datetime
) -> dict[uuid.UUID, dict[str, int]]:
    """Per schedule, its due runs held back on purpose: ``queue`` and ``rateLimit``."""
    if not schedule_ids:
        return {}
    rows = db.execute(_HELD, {"ids": list(schedule_ids), "now": now})
    return {
        row.schedule_id: {
            k: v for k, v in (("queue", row.queue), ("rateLimit", row.rate_limit)) if v
        }
        for row in rows
        if row.queue or row.rate_limit
    }


_SPECS = text(
    "SELECT id, spec::text AS spec_json FROM schedules WHERE id = ANY(CAST(:ids AS uuid[]))"
)


def schedule_specs(db: Connection, schedule_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
    """The stored spec (JSON text) of each schedule, for runs planned by another tick."""
    if not schedule_ids:
        return {}
    rows = db.execute(_SPECS, {"ids": list(schedule_ids)})
    return {row.id: row.spec_json for row in rows}


# Plain runs are read through ix_runs_publishable in due order (the first one is enough); runs
# of Queue and rate-limited schedules, found from ix_schedules_held_back, by the rules below.
# A run held by its rate limit is due again when the oldest send in its window leaves it; a
# run waiting behind another run of its Queue schedule is woken by that run's end (the
# ``count_runs`` trigger notifies), so it has no time of its own here.
_NEXT_WAKE = text(f"""
    SELECT least(
        (SELECT min(next_due_at) FROM schedules
         WHERE deleted_at IS NULL AND NOT suspended AND next_due_at IS NOT NULL),
        (SELECT r.due_at FROM runs AS r JOIN schedules AS s ON s.id = r.schedule_id
         WHERE r.state IN ('planned', 'retrying') AND r.id <> ALL(CAST(:sent AS uuid[]))
           AND NOT s.queued AND s.rate_key IS NULL
         ORDER BY r.due_at LIMIT 1),
        (SELECT min(CASE WHEN NOT {_OUT_OF_BUDGET} THEN r.due_at ELSE greatest(r.due_at, (
                    SELECT min(w.sent_at) + s.rate_per FROM rate_sends AS w
                    WHERE w.namespace = s.namespace AND w.key = s.rate_key
                      AND w.sent_at > CAST(:now AS timestamptz) - s.rate_per)) END)
         FROM schedules AS s JOIN runs AS r ON r.schedule_id = s.id
         WHERE (s.queued OR s.rate_key IS NOT NULL)
           AND r.state IN ('planned', 'retrying') AND r.id <> ALL(CAST(:sent AS uuid[]))
           AND NOT {_WAITS_ITS_TURN}))
""")  # noqa: S608 (constant SQL fragments, no input)


_OLDEST_UNSTARTED = text("SELECT min(enqueued_at) FROM runs WHERE state = 'enqueued'")


def oldest_unstarted(db: Connection) -> datetime | None:
    """When the run longest ``enqueued`` (and not started yet) was sent, if any is."""
    found: datetime | None = db.execute(_OLDEST_UNSTARTED).scalar()
    return found


def next_wake(db: Connection, *, now: datetime, sent: Sequence[uuid.UUID] = ()) -> datetime | None:
    """When something next becomes due: a schedule, a planned run or a retry.

    ``sent``: runs already published whose ``enqueued`` record has not committed yet; they
    look due but are not.
    """
    found: datetime | None = db.execute(_NEXT_WAKE, {"now": now, "sent": list(sent)}).scalar()
    return found


# --- history -------------------------------------------------------------------------------

_PRUNE = text("""
    WITH target AS (
        SELECT * FROM unnest(CAST(:ids AS uuid[]), CAST(:keep_ok AS int[]),
                             CAST(:keep_other AS int[])) AS t(schedule_id, keep_ok, keep_other)
    ), ranked AS (
        SELECT r.id,
               row_number() OVER (PARTITION BY r.schedule_id, r.state = 'succeeded'
                                  ORDER BY r.planned_at DESC) AS n,
               CASE WHEN r.state = 'succeeded' THEN t.keep_ok ELSE t.keep_other END AS keep
        FROM runs AS r JOIN target AS t ON t.schedule_id = r.schedule_id
        WHERE r.state IN ('cancelled', 'dead', 'expired', 'failed', 'missed', 'skipped',
                          'succeeded')
          AND NOT (r.state = 'failed' AND r.attempt < r.max_attempts)
    )
    DELETE FROM runs WHERE id IN (SELECT id FROM ranked WHERE n > keep)
""")


def prune_history(db: Connection, keep: Sequence[tuple[uuid.UUID, int, int]]) -> int:
    """Delete finished runs beyond ``(schedule id, succeeded to keep, others to keep)``.

    ``failed`` runs with attempts left are kept: they may still move on to ``retrying``.
    """
    if not keep:
        return 0
    result = db.execute(
        _PRUNE,
        {
            "ids": [k[0] for k in keep],
            "keep_ok": [k[1] for k in keep],
            "keep_other": [k[2] for k in keep],
        },
    )
    return result.rowcount
