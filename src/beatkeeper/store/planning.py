"""The named queries of planning a Beat tick: claim due schedules, record their runs.

One tick of any Beat replica is: ``claim_due_schedules`` (``FOR UPDATE SKIP LOCKED``, so
replicas split the due rows instead of waiting for each other), ``decisions.planning.decide``
for each claimed schedule (pure: which occurrences become runs, in which state, and where
``next_run_at`` moves), ``record_plans`` (insert the runs, ``ON CONFLICT (schedule_id,
planned_at) DO NOTHING``, and advance the schedules, in one round trip), commit; then the
publishing half (``beatkeeper.store.publishing``). The unique key, not a lock, keeps an
occurrence from being planned twice (invariant 1). ``next_wake`` says when anything is next
due; ``count_due_runs`` and ``held_runs`` what waits to be published, and why.

Every query reads through an index whose size follows what is due (``ix_schedules_due``,
``ix_runs_publishable``, ``ix_runs_enqueued``), so a tick costs what is due, never what
exists. Arrays go in with ``unnest`` so a batch is one statement whatever its size.

This module never commits, never talks to a broker and never reads the clock: callers pass
``now``. It decides nothing either: ``decisions.planning`` says what a due schedule gets.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, text

from beatkeeper.decisions.planning import Advance, DueSchedule, NewRun
from beatkeeper.store import cancellations
from beatkeeper.store.publishing import OUT_OF_BUDGET, WAITS_ITS_TURN

__all__ = [
    "DueRuns",
    "Recorded",
    "WakeTimes",
    "busy_runs",
    "claim_due_schedules",
    "count_due_runs",
    "held_runs",
    "next_wake",
    "prune_history",
    "record_plans",
    "wake_times",
]


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
    # By position: the SELECT lists DueSchedule's fields in order (a test pins it), and
    # building from the row's mapping cost 4-8 us a row more, at 1,667 rows a second.
    return [DueSchedule(*row) for row in rows]


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


_DUE_RUNS = text(f"""
    SELECT count(*) FILTER (WHERE NOT {WAITS_ITS_TURN} AND NOT {OUT_OF_BUDGET}) AS ready,
           count(*) FILTER (WHERE {WAITS_ITS_TURN}) AS queued,
           count(*) FILTER (WHERE NOT {WAITS_ITS_TURN} AND {OUT_OF_BUDGET}) AS rate_limited
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
           count(*) FILTER (WHERE {WAITS_ITS_TURN}) AS queue,
           count(*) FILTER (WHERE NOT {WAITS_ITS_TURN} AND {OUT_OF_BUDGET}) AS rate_limit
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


# Plain runs are read through ix_runs_publishable in due order (the first one is enough); runs
# of Queue and rate-limited schedules, found from ix_schedules_held_back, by the rules below.
# A run held by its rate limit is due again when the oldest send in its window leaves it; a
# run waiting behind another run of its Queue schedule is woken by that run's end (the
# ``count_runs`` trigger notifies), so it has no time of its own here.
_NEXT_DUE = f"""
    least(
        (SELECT min(next_due_at) FROM schedules
         WHERE deleted_at IS NULL AND NOT suspended AND next_due_at IS NOT NULL),
        (SELECT r.due_at FROM runs AS r JOIN schedules AS s ON s.id = r.schedule_id
         WHERE r.state IN ('planned', 'retrying') AND r.id <> ALL(CAST(:sent AS uuid[]))
           AND NOT s.queued AND s.rate_key IS NULL
         ORDER BY r.due_at LIMIT 1),
        (SELECT min(CASE WHEN NOT {OUT_OF_BUDGET} THEN r.due_at ELSE greatest(r.due_at, (
                    SELECT min(w.sent_at) + s.rate_per FROM rate_sends AS w
                    WHERE w.namespace = s.namespace AND w.key = s.rate_key
                      AND w.sent_at > CAST(:now AS timestamptz) - s.rate_per)) END)
         FROM schedules AS s JOIN runs AS r ON r.schedule_id = s.id
         WHERE (s.queued OR s.rate_key IS NOT NULL)
           AND r.state IN ('planned', 'retrying') AND r.id <> ALL(CAST(:sent AS uuid[]))
           AND NOT {WAITS_ITS_TURN}))
"""  # noqa: S608 (constant SQL fragments, no input)
_OLDEST = "SELECT min(enqueued_at) FROM runs WHERE state = 'enqueued'"
# All in one round trip: Beat asks after every tick, and at 100k schedules a tick is a few
# milliseconds, each round trip waiting for a busy host to schedule the server.
_WAKE_TIMES = text(f"""
    SELECT {_NEXT_DUE} AS next_due, ({_OLDEST}) AS oldest_unstarted,
           {cancellations.NEXT_CHECK} AS cancel_check
""")


def next_wake(db: Connection, *, now: datetime, sent: Sequence[uuid.UUID] = ()) -> datetime | None:
    """When something next becomes due: a schedule, a planned run or a retry.

    ``sent``: runs already published whose ``enqueued`` record has not committed yet; they
    look due but are not.
    """
    return wake_times(db, now=now, sent=sent).next_due  # the one statement Beat asks


@dataclass(frozen=True)
class WakeTimes:
    next_due: datetime | None  # ``next_wake``
    oldest_unstarted: datetime | None  # when the run longest ``enqueued`` was sent
    cancel_check: datetime | None  # ``cancellations.NEXT_CHECK``


def wake_times(db: Connection, *, now: datetime, sent: Sequence[uuid.UUID] = ()) -> WakeTimes:
    """``next_wake``, when the run longest ``enqueued`` (and not started yet) was sent, and
    when an open cancel request is next due for a look: what Beat asks after every tick."""
    row = db.execute(_WAKE_TIMES, {"now": now, "sent": list(sent)}).one()
    return WakeTimes(row.next_due, row.oldest_unstarted, row.cancel_check)


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
