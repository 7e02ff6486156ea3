"""Run state transitions applied to the database, each as one conditional UPDATE.

``transition`` moves a run to a state only if the row is, at that instant, in one of the
states ``beatkeeper.states`` allows as a source. PostgreSQL re-checks the ``WHERE`` after
waiting for a concurrent writer's row lock, so of two racing transitions exactly one wins and
the loser changes nothing and gets ``False``: no locks, reads or retries are needed around it.

Each transition also stamps the timestamp that belongs to the state it enters (see
``_stamps``), so ``enqueued_at``/``started_at``/``finished_at`` always describe the current
attempt. Callers may pass other columns (``worker=…``, ``error=…``, ``attempt=runs.c.attempt
+ 1``) as keyword arguments; ``result`` and ``error`` are cut to ``SUMMARY_MAX_CHARS``.

These functions never commit: the caller owns the transaction, so a transition can share it
with whatever else must change atomically. This module must not decide *which* transition to
make (that is the scheduler's and the worker's job) nor publish anything.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Update, any_, bindparam, select, update
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.orm import Session
from sqlalchemy.types import Uuid

from beatkeeper.states import FINAL, RunState, describe_transition, sources_for
from beatkeeper.store.models import runs

__all__ = [
    "SUMMARY_MAX_CHARS",
    "explain_transition",
    "insert_runs",
    "transition",
    "transition_many",
]

SUMMARY_MAX_CHARS = 2000
"""Longest ``result``/``error`` text kept; the runs table is a ledger, not a result backend."""

Database = Connection | Session

# The key (schedule_id, planned_at), the identity and the state itself are not for callers.
_WRITABLE = frozenset(
    {
        "due_at",
        "attempt",
        "max_attempts",
        "task",
        "enqueued_at",
        "started_at",
        "finished_at",
        "worker",
        "worker_pid",
        "worker_session",
        "result",
        "error",
        "worker_losses",
    }
)


def insert_runs(db: Database, rows: Sequence[Mapping[str, Any]]) -> list[uuid.UUID]:
    """Insert the runs of ``rows`` (``runs`` columns, the same in every row) whose occurrence
    has none yet; the ids of those inserted, in no particular order.

    ``ON CONFLICT DO NOTHING`` on the run key ``(schedule_id, planned_at)`` is what plans an
    occurrence at most once (invariant 1), whoever inserts it. (Beat's planning inserts its
    runs with the same key and clause, in one statement with the schedules it advances:
    ``beatkeeper.store.planning.record_plans``.)
    """
    if not rows:
        return []
    statement = (
        insert(runs)
        .on_conflict_do_nothing(index_elements=[runs.c.schedule_id, runs.c.planned_at])
        .returning(runs.c.id)
    )
    return list(db.execute(statement, list(rows)).scalars())


def transition(
    db: Database, run_id: uuid.UUID, to: RunState, *, now: datetime, **fields: Any
) -> bool:
    """Move run ``run_id`` to ``to``; ``False`` (nothing changed) if it was not in a source state.

    ``False`` means the run does not exist, another transition got there first, or the move
    is illegal from its current state; ``explain_transition`` says which.
    """
    statement = _update(to, now, fields).where(runs.c.id == run_id).returning(runs.c.id)
    return db.execute(statement).first() is not None


def transition_many(
    db: Database, run_ids: Collection[uuid.UUID], to: RunState, *, now: datetime, **fields: Any
) -> list[uuid.UUID]:
    """Move every listed run that is in a source state of ``to``; return the ids that moved."""
    if not run_ids:
        return []
    # "= ANY(array)" keeps one SQL text whatever the count, so psycopg can reuse the plan.
    ids = bindparam("run_ids", list(run_ids), type_=ARRAY(Uuid()))
    statement = _update(to, now, fields).where(runs.c.id == any_(ids)).returning(runs.c.id)
    return list(db.execute(statement).scalars())


def explain_transition(db: Database, run_id: uuid.UUID, to: RunState) -> str:
    """Why moving ``run_id`` to ``to`` would (not) work now, for logs and CLI messages."""
    state = db.execute(select(runs.c.state).where(runs.c.id == run_id)).scalar_one_or_none()
    if state is None:
        return f"run {run_id} does not exist"
    return f"run {run_id} is {state}: {describe_transition(RunState(state), to)}"


def _update(to: RunState, now: datetime, fields: Mapping[str, Any]) -> Update:
    unknown = fields.keys() - _WRITABLE
    if unknown:
        raise TypeError(
            f"cannot set {', '.join(sorted(unknown))} in a transition; "
            f"settable columns: {', '.join(sorted(_WRITABLE))}"
        )
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    values: dict[str, Any] = {"state": to.value, "updated_at": now, **_stamps(to, now)}
    values.update({name: _bounded(name, value) for name, value in fields.items()})
    sources = sorted(state.value for state in sources_for(to))
    return update(runs).where(runs.c.state.in_(sources)).values(values)


def _stamps(to: RunState, now: datetime) -> dict[str, datetime | None]:
    if to is RunState.ENQUEUED:
        # A retry re-enters enqueued: the previous attempt's times no longer describe it.
        return {"enqueued_at": now, "started_at": None, "finished_at": None}
    if to is RunState.RUNNING:
        return {"started_at": now, "finished_at": None}
    if to in FINAL:
        return {"finished_at": now}
    return {}


def _bounded(name: str, value: Any) -> Any:
    if name in {"result", "error"} and isinstance(value, str) and len(value) > SUMMARY_MAX_CHARS:
        cut = len(value) - SUMMARY_MAX_CHARS
        return f"{value[:SUMMARY_MAX_CHARS]}… [{cut} more characters cut]"
    return value
