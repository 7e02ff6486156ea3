"""The reads behind a Schedule's status: what changed since a poll, and what a status shows.

The operator's status refresher polls ``schedules_edited_after`` and
``schedules_with_runs_after`` (``updated_at`` on both tables) against ``database_now``, the
database's own clock, and ``runs_now_in`` for runs that ended in a state worth an Event.
``load_status`` then reads each changed schedule's row and its runs in one batch of queries:
the latest few, the unfinished ones, the lifetime counts per final state kept in
``run_counts``, the last success and the due runs held back on purpose.

Reads only, in the caller's transaction: never writes, never decides what a status says
(that is the operator's), never talks to Kubernetes.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select

from beatkeeper.states import ACTIVE, RunState
from beatkeeper.store import planning
from beatkeeper.store.models import run_counts, runs, schedules

__all__ = [
    "ChangedRun",
    "RunLine",
    "StoredStatus",
    "UnfinishedRun",
    "database_now",
    "load_status",
    "runs_now_in",
    "schedules_edited_after",
    "schedules_with_runs_after",
]


@dataclass(frozen=True)
class RunLine:
    """One of a schedule's latest runs, as its status lists it."""

    id: uuid.UUID
    planned_at: datetime
    state: str
    attempt: int
    started_at: datetime | None
    finished_at: datetime | None
    result: str | None
    error: str | None


@dataclass(frozen=True)
class UnfinishedRun:
    """A run still planned, enqueued, running or waiting for a retry."""

    id: uuid.UUID
    planned_at: datetime


@dataclass
class StoredStatus:
    """One schedule row with its runs: everything a status is made of."""

    id: uuid.UUID
    namespace: str
    name: str
    generation: int
    trigger: str
    spec: dict[str, Any]
    spec_hash: str
    created_at: datetime
    suspended: bool
    paused_reason: str | None
    next_run_at: datetime | None
    planned_count: int
    last_scheduled_at: datetime | None
    deleted_at: datetime | None
    updated_at: datetime | None
    recent: list[RunLine] = field(default_factory=list)  # newest first
    active: list[UnfinishedRun] = field(default_factory=list)  # oldest first
    counts: dict[str, int] = field(default_factory=dict)  # lifetime totals per final state
    last_success: datetime | None = None
    held: dict[str, int] = field(default_factory=dict)  # due runs waiting on purpose, by reason


@dataclass(frozen=True)
class ChangedRun:
    """A run whose row changed after a poll, with what an Event about it says."""

    id: uuid.UUID
    schedule_id: uuid.UUID
    state: str
    planned_at: datetime
    error: str | None
    updated_at: datetime


def database_now(db: Connection) -> datetime:
    """The database's clock: writers stamp ``updated_at`` with theirs, not the poller's."""
    moment: datetime = db.execute(select(func.now())).scalar_one()
    return moment


def schedules_edited_after(db: Connection, after: datetime) -> dict[uuid.UUID, datetime]:
    """Every schedule row written after ``after``, with its ``updated_at`` (its version)."""
    edited = select(schedules.c.id, schedules.c.updated_at).where(schedules.c.updated_at > after)
    return {row.id: row.updated_at for row in db.execute(edited)}


def schedules_with_runs_after(db: Connection, after: datetime) -> set[uuid.UUID]:
    """The schedules with a run written after ``after``."""
    changed = select(runs.c.schedule_id).where(runs.c.updated_at > after).distinct()
    return set(db.execute(changed).scalars())


def runs_now_in(db: Connection, states: Collection[str], *, after: datetime) -> list[ChangedRun]:
    """The runs written after ``after`` that are now in one of ``states``."""
    found = db.execute(
        select(
            runs.c.id,
            runs.c.schedule_id,
            runs.c.state,
            runs.c.planned_at,
            runs.c.error,
            runs.c.updated_at,
        ).where(runs.c.updated_at > after, runs.c.state.in_(list(states)))
    )
    return [ChangedRun(**row._mapping) for row in found]


def load_status(
    db: Connection,
    ids: Sequence[uuid.UUID],
    *,
    recent: int,
    now: datetime,
    with_runs: bool = True,
    retired: bool = False,
) -> dict[uuid.UUID, StoredStatus]:
    """The live schedules among ``ids`` (retired ones too if asked), with their runs.

    ``recent``: how many of the latest runs to read. ``with_runs=False`` reads no runs, for
    schedules known to have none (rows created just now). ``now`` decides which planned runs
    are due and held back.
    """
    if not ids:
        return {}
    query = select(schedules).where(schedules.c.id.in_(ids))
    if not retired:
        query = query.where(schedules.c.deleted_at.is_(None))
    found = {row.id: _stored(row) for row in db.execute(query)}
    if found and with_runs:
        _load_runs(db, found, recent=recent, now=now)
    return found


_ROW_FIELDS = tuple(
    name
    for name in StoredStatus.__dataclass_fields__
    if name not in {"recent", "active", "counts", "last_success", "held"}
)


def _stored(row: Any) -> StoredStatus:
    fields = row._mapping
    return StoredStatus(**{name: fields[name] for name in _ROW_FIELDS})


def _load_runs(
    db: Connection, found: dict[uuid.UUID, StoredStatus], *, recent: int, now: datetime
) -> None:
    wanted = list(found)
    newest = (
        func.row_number()
        .over(partition_by=runs.c.schedule_id, order_by=runs.c.planned_at.desc())
        .label("newest")
    )
    line = [runs.c[name] for name in RunLine.__dataclass_fields__]
    ranked = select(runs.c.schedule_id, *line, newest).where(runs.c.schedule_id.in_(wanted))
    ranked_rows = ranked.subquery()
    latest = (
        select(ranked_rows)
        .where(ranked_rows.c.newest <= recent)
        .order_by(ranked_rows.c.schedule_id, ranked_rows.c.newest)
    )
    for row in db.execute(latest):
        fields = row._mapping
        found[row.schedule_id].recent.append(
            RunLine(**{name: fields[name] for name in RunLine.__dataclass_fields__})
        )
    active = (
        select(runs.c.schedule_id, runs.c.id, runs.c.planned_at)
        .where(runs.c.schedule_id.in_(wanted), runs.c.state.in_([s.value for s in ACTIVE]))
        .order_by(runs.c.planned_at)
    )
    for row in db.execute(active):
        found[row.schedule_id].active.append(UnfinishedRun(row.id, row.planned_at))
    # Lifetime totals, kept in the transaction of each final transition: pruning history
    # does not shrink them.
    totals = select(run_counts.c.schedule_id, run_counts.c.state, run_counts.c.total).where(
        run_counts.c.schedule_id.in_(wanted), run_counts.c.total > 0
    )
    for schedule_id, state, total in db.execute(totals):
        found[schedule_id].counts[state] = total
    succeeded = (
        select(runs.c.schedule_id, func.max(runs.c.finished_at))
        .where(runs.c.schedule_id.in_(wanted), runs.c.state == RunState.SUCCEEDED.value)
        .group_by(runs.c.schedule_id)
    )
    for schedule_id, finished in db.execute(succeeded):
        found[schedule_id].last_success = finished
    for schedule_id, held in planning.held_runs(db, wanted, now=now).items():
        found[schedule_id].held = held
