"""What a due schedule gets now: its runs, the state each is born in, and its next occurrence.

``decide`` is the pure half of planning: for one schedule that a Beat tick claimed
(``beatkeeper.store.planning.claim_due_schedules``), it says which due occurrences become
runs, in which state, and where the schedule's ``next_run_at`` moves. Each due occurrence
becomes a ``planned`` run unless a policy says otherwise: past its ``startingDeadline`` it is
``missed``, past ``expires`` it is ``expired``, and under ``concurrencyPolicy: Forbid`` with a
run still active it is ``skipped``. (``Replace`` is the caller's to act on: it cancels the
unfinished runs of a schedule that gets a new ``planned`` one. ``Queue`` plans every
occurrence, as ``Allow`` does; the publishing claim holds each back until the runs before
it finished, see ``beatkeeper.store.planning``.)

Catch-up after downtime (``missedRuns``): an occurrence is *overdue* when the next one is
due as well. ``RunAll`` plans each (at most ``CATCH_UP_PER_TICK`` per schedule per tick, the
rest next tick); ``RunLatest`` records the overdue ones as ``missed`` and plans the latest;
``Skip`` records them all as ``missed``. Past ``CATCH_UP_PER_TICK`` overdue occurrences the
rest are jumped over without a row each. ``maxRuns`` counts every occurrence that got a row.

Pure: no SQL, no broker, no I/O, and no clock (callers pass ``now``). Recording the answer
is ``beatkeeper.store.planning.record_plans``'s business.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from beatkeeper.recurrence import Recurrence
from beatkeeper.spec import ScheduleSpec
from beatkeeper.states import RunState

__all__ = ["CATCH_UP_PER_TICK", "Advance", "DueSchedule", "NewRun", "Plan", "decide", "too_late"]

CATCH_UP_PER_TICK = 100


@dataclass(frozen=True)
class DueSchedule:
    """A schedule row locked by ``claim_due_schedules``; its spec is parsed only if needed."""

    id: uuid.UUID
    namespace: str
    name: str
    spec_json: str
    spec_hash: str
    created_at: datetime
    planned_count: int
    next_run_at: datetime
    next_due_at: datetime


@dataclass(frozen=True)
class NewRun:
    schedule_id: uuid.UUID
    planned_at: datetime
    due_at: datetime
    state: RunState
    task: str
    max_attempts: int
    reason: str | None = None  # why a run was born finished (missed, skipped, expired)


@dataclass(frozen=True)
class Advance:
    schedule_id: uuid.UUID
    next_run_at: datetime | None
    next_due_at: datetime | None
    planned_count: int
    last_scheduled_at: datetime | None


@dataclass(frozen=True)
class Plan:
    runs: list[NewRun] = field(default_factory=list)
    advance: Advance | None = None
    jumped: bool = False  # overdue occurrences were passed over without a row


def decide(
    due: DueSchedule, spec: ScheduleSpec, recurrence: Recurrence, *, now: datetime, busy: bool
) -> Plan:
    """The runs one claimed schedule gets now and where its ``next_run_at`` moves.

    ``busy``: the schedule has a run that is not finished (only asked for ``Forbid``).
    """
    occurrences, upcoming, count = _due_occurrences(due, recurrence, now=now)
    jumped = upcoming is not None and upcoming[1] <= now and spec.missed_runs != "RunAll"
    if jumped:
        assert upcoming is not None
        latest = _latest_at_or_before(recurrence, upcoming[0], now)
        occurrences.append((latest, _due(recurrence, latest)))
        count += 1
        following = recurrence.next_after(latest, planned_so_far=count)
        upcoming = None if following is None else (following, _due(recurrence, following))
    runs = _runs(due, spec, occurrences, now=now, busy=busy)
    advance = Advance(
        schedule_id=due.id,
        next_run_at=upcoming[0] if upcoming else None,
        next_due_at=upcoming[1] if upcoming else None,
        planned_count=count,
        last_scheduled_at=occurrences[-1][0] if occurrences else None,
    )
    return Plan(runs, advance, jumped)


def _due_occurrences(
    due: DueSchedule, recurrence: Recurrence, *, now: datetime
) -> tuple[list[tuple[datetime, datetime]], tuple[datetime, datetime] | None, int]:
    """Due (planned, due) pairs from ``next_run_at`` on, at most CATCH_UP_PER_TICK; the next."""
    found: list[tuple[datetime, datetime]] = []
    count = due.planned_count
    upcoming: tuple[datetime, datetime] | None = (due.next_run_at, due.next_due_at)
    while upcoming is not None and upcoming[1] <= now and len(found) < CATCH_UP_PER_TICK:
        found.append(upcoming)
        count += 1
        following = recurrence.next_after(upcoming[0], planned_so_far=count)
        upcoming = None if following is None else (following, _due(recurrence, following))
    return found, upcoming, count


def _runs(
    due: DueSchedule,
    spec: ScheduleSpec,
    occurrences: list[tuple[datetime, datetime]],
    *,
    now: datetime,
    busy: bool,
) -> list[NewRun]:
    runs = []
    caught_up = len(occurrences) > 1  # more than one due at once: Beat was down
    for index, (planned, due_at) in enumerate(occurrences):
        latest = index == len(occurrences) - 1
        state: RunState = RunState.MISSED
        reason: str | None = f"overdue after downtime (missedRuns: {spec.missed_runs})"
        if (
            not caught_up
            or spec.missed_runs == "RunAll"
            or (latest and spec.missed_runs == "RunLatest")
        ):
            state, reason = _state_of(spec, due_at, now=now, busy=busy)
        if state is RunState.PLANNED and spec.concurrency_policy == "Forbid":
            busy = True  # one run at a time, within a catch-up too
        runs.append(
            NewRun(due.id, planned, due_at, state, spec.task, spec.retry.max_attempts, reason)
        )
    return runs


def too_late(
    due_at: datetime,
    *,
    starting_deadline: timedelta | None,
    expires: timedelta | None,
    first_attempt: bool,
    now: datetime,
) -> tuple[RunState, str] | None:
    """Why an occurrence due at ``due_at`` is not sent at ``now``, if it is not: ``missed``
    past ``startingDeadline`` (a first attempt only: a retry has started already), or
    ``expired`` past ``expires``. Asked when it is planned and again when it is published."""
    if first_attempt and starting_deadline is not None and due_at + starting_deadline < now:
        return RunState.MISSED, "could not start within startingDeadline"
    if expires is not None and due_at + expires < now:
        return RunState.EXPIRED, "expires passed before it could be published"
    return None


def _state_of(
    spec: ScheduleSpec, due_at: datetime, *, now: datetime, busy: bool
) -> tuple[RunState, str | None]:
    late = too_late(
        due_at,
        starting_deadline=spec.starting_deadline,
        expires=spec.expires,
        first_attempt=True,
        now=now,
    )
    if late is not None:
        return late
    if busy and spec.concurrency_policy == "Forbid":
        return RunState.SKIPPED, "a run was still active (concurrencyPolicy: Forbid)"
    return RunState.PLANNED, None


def _due(recurrence: Recurrence, planned: datetime) -> datetime:
    return planned + recurrence.jitter_for(planned)


def _latest_at_or_before(recurrence: Recurrence, start: datetime, cutoff: datetime) -> datetime:
    """The last occurrence <= ``cutoff``, found by bisection from ``start`` (an occurrence)."""
    low, high = start, cutoff
    while high - low > timedelta(microseconds=1):
        middle = low + (high - low) / 2
        found = recurrence.next_after(middle)
        if found is not None and found <= cutoff:
            low = found
        else:
            high = middle
    return low
