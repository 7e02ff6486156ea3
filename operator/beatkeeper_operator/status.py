"""What a Schedule's status should say, from what the store holds.

``load_observations`` turns schedule ids into ``Observation``s: the store's view of the
row and its runs (``beatkeeper.store.status.load_status``, one batch of queries) with the
next few occurrences worked out from the spec. ``run_fields`` renders those
as the status fields the database owns, ``ready_condition`` builds the ``Ready`` condition
keeping ``lastTransitionTime`` while the status stays the same, and ``status_patch`` keeps
only what differs from the status the resource already has, so unchanged schedules get no
PATCH at all. Times are RFC 3339 in UTC, to the second.

Reads only; holds no SQL, never writes to the database or talks to Kubernetes.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from beatkeeper.spec import ScheduleSpec
from beatkeeper.spec.recurrences import Recurrences
from beatkeeper.spec.status import ActiveRun, Condition, RecentRun, RunSummary
from beatkeeper.store import Connection
from beatkeeper.store.status import RunLine, StoredStatus, UnfinishedRun, load_status

__all__ = [
    "NEXT_RUN_TIMES",
    "RECENT_RUNS",
    "RUN_FIELDS",
    "TRIGGER_LENGTH",
    "Observation",
    "already_reported",
    "clip",
    "load_observations",
    "previous_ready",
    "ready_condition",
    "rfc3339",
    "run_fields",
    "status_patch",
]

#: How many upcoming occurrences ``nextRunTimes`` lists.
NEXT_RUN_TIMES = 3
#: How many of the latest runs ``recentRuns`` lists.
RECENT_RUNS = 5
#: The status fields that follow the database (the rest follow the spec).
RUN_FIELDS = (
    "nextRunTimes",
    "lastScheduleTime",
    "lastSuccessfulTime",
    "lastRun",
    "recentRuns",
    "active",
    "counts",
    "held",
)
#: The CRD's limits on the status strings (``beatkeeper.spec.status``).
TRIGGER_LENGTH = 256
_MAX_ACTIVE = 100
_MESSAGE = 1024
_ERROR = 256


@dataclass
class Observation:
    """One live schedule row and its runs, as the status reports them."""

    id: uuid.UUID
    namespace: str
    name: str
    generation: int
    trigger: str
    suspended: bool
    paused_reason: str | None
    next_run_times: list[datetime]
    last_scheduled_at: datetime | None
    updated_at: datetime | None = None  # the row's version, for the refresher
    last_success: datetime | None = None
    last_run: RunLine | None = None
    recent: list[RunLine] = field(default_factory=list)  # newest first, RECENT_RUNS at most
    active: list[UnfinishedRun] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    held: dict[str, int] = field(default_factory=dict)  # due runs waiting on purpose, by reason


def rfc3339(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def load_observations(
    db: Connection,
    ids: Sequence[uuid.UUID],
    *,
    with_runs: bool = True,
    retired: bool = False,
    now: datetime | None = None,
) -> dict[uuid.UUID, Observation]:
    """The live schedules among ``ids`` (retired ones too if asked), with their runs.

    ``with_runs=False`` is for schedules known to have none (rows created just now): their
    runs are not queried and the observation reports none. A retired schedule (refused by
    the policy, say) plans nothing more, but the runs it already started still go on.
    """
    stored = load_status(
        db,
        ids,
        recent=RECENT_RUNS,
        now=now or datetime.now(UTC),
        with_runs=with_runs,
        retired=retired,
    )
    return {key: _observation(row) for key, row in stored.items()}


def _observation(row: StoredStatus) -> Observation:
    return Observation(
        id=row.id,
        namespace=row.namespace,
        name=row.name,
        generation=row.generation,
        trigger=row.trigger,
        suspended=row.suspended,
        paused_reason=row.paused_reason,
        next_run_times=_upcoming(row),
        last_scheduled_at=row.last_scheduled_at,
        updated_at=row.updated_at,
        last_success=row.last_success,
        last_run=row.recent[0] if row.recent else None,
        recent=row.recent,
        active=row.active,
        counts=row.counts,
        held=row.held,
    )


# Rows change on every run; their specs rarely do (an RRULE's COUNT is costly to expand).
_RECURRENCES = Recurrences()


def _upcoming(row: StoredStatus) -> list[datetime]:
    if row.suspended or row.next_run_at is None or row.deleted_at is not None:
        return []
    _, recurrence = _RECURRENCES.of(
        row.id,
        row.spec_hash,
        lambda: ScheduleSpec.model_validate(row.spec),
        created_at=row.created_at,
    )
    moments = [row.next_run_at]
    while len(moments) < NEXT_RUN_TIMES:
        following = recurrence.next_after(
            moments[-1], planned_so_far=row.planned_count + len(moments)
        )
        if following is None:
            break
        moments.append(following)
    return moments


def run_fields(seen: Observation) -> dict[str, Any]:
    """The database-owned status fields; None for those with nothing to say."""
    last = seen.last_run
    summary = None
    if last is not None:
        summary = RunSummary(
            id=str(last.id),
            planned_time=rfc3339(last.planned_at) or "",
            state=last.state,
            attempt=last.attempt,
            start_time=rfc3339(last.started_at),
            finish_time=rfc3339(last.finished_at),
            message=_clip(last.error or last.result),
        ).model_dump(mode="json", by_alias=True, exclude_none=True)
    active = [
        ActiveRun(id=str(run.id), planned_time=rfc3339(run.planned_at) or "").model_dump(
            mode="json", by_alias=True
        )
        for run in seen.active[:_MAX_ACTIVE]
    ]
    recent = [
        RecentRun(
            id=str(run.id),
            planned_time=rfc3339(run.planned_at) or "",
            state=run.state,
            attempt=run.attempt,
            finish_time=rfc3339(run.finished_at),
            error=None if run.error is None else clip(run.error, _ERROR),
        ).model_dump(mode="json", by_alias=True, exclude_none=True)
        for run in seen.recent[:RECENT_RUNS]
    ]
    return {
        "nextRunTimes": [rfc3339(moment) for moment in seen.next_run_times],
        "lastScheduleTime": rfc3339(seen.last_scheduled_at),
        "lastSuccessfulTime": rfc3339(seen.last_success),
        "lastRun": summary,
        "recentRuns": recent,
        "active": active,
        "counts": dict(sorted(seen.counts.items())),
        "held": dict(sorted(seen.held.items())),
    }


def ready_condition(
    *,
    status: bool,
    reason: str,
    message: str,
    generation: int | None,
    previous: Mapping[str, Any] | None,
    now: datetime,
) -> dict[str, Any]:
    """The ``Ready`` condition; its transition time moves only when its status does."""
    value = "True" if status else "False"
    since = rfc3339(now)
    if previous and previous.get("status") == value and previous.get("lastTransitionTime"):
        since = str(previous["lastTransitionTime"])
    condition = Condition(
        type="Ready",
        status=value,
        reason=reason,
        message=_clip(message) or "",
        last_transition_time=since,
        observed_generation=generation,
    )
    return condition.model_dump(mode="json", by_alias=True, exclude_none=True)


def already_reported(previous: Mapping[str, Any] | None, condition: Mapping[str, Any]) -> bool:
    """Whether the status already shows this Ready condition for this generation.

    The resource itself is the record of what was reported: an operator restarted (its
    Event limiter is in memory) posts again only what the status does not already say.
    """
    keys = ("status", "reason", "message", "observedGeneration")
    return previous is not None and all(previous.get(k) == condition.get(k) for k in keys)


def previous_ready(status: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    for condition in (status or {}).get("conditions") or []:
        if isinstance(condition, Mapping) and condition.get("type") == "Ready":
            return condition
    return None


def status_patch(current: Mapping[str, Any] | None, desired: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of ``desired`` that differ from ``current`` (None removes a field)."""
    current = current or {}
    patch: dict[str, Any] = {}
    for key, value in desired.items():
        empty = value is None or value in ([], {})
        if empty and current.get(key) in (None, [], {}):
            continue
        if current.get(key) != value:
            patch[key] = None if empty else value
    return patch


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, ending in "..." when it was cut."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _clip(text: str | None) -> str | None:
    return None if text is None else clip(text, _MESSAGE)
