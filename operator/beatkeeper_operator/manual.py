"""Act on the request annotations of one Schedule (``annotations``), inside its reconcile.

Each request is acted on at most once, however often the operator sees it: a trigger or a
replay token names the run it plans (``requests.trigger_once``, ``requests.replay_once``), a
backfill plans only occurrences never planned, a cancel of a cancelled run (or of one whose
cancel was requested already) does nothing, and the resume token last acted on is kept in
the status (``Requests.resumed``). What was done, or why it could not be, becomes an Event.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from beatkeeper.store import Connection, backfills, cancellations, lookups, requests
from beatkeeper_operator.annotations import (
    BACKFILL_ANNOTATION,
    CANCEL_ANNOTATION,
    REPLAY_ANNOTATION,
    RESUME_ANNOTATION,
    TRIGGER_ANNOTATION,
    run_request,
)

__all__ = ["Notice", "Requests", "act_on", "requested"]


class Notice(NamedTuple):
    """An Event to post on the Schedule."""

    type: str  # Normal or Warning
    reason: str
    message: str


@dataclass
class Requests:
    """What the request annotations led to: Events, and the resume token acted on."""

    notices: list[Notice] = field(default_factory=list)
    resumed: str | None = None


_KEYS = (
    TRIGGER_ANNOTATION,
    BACKFILL_ANNOTATION,
    RESUME_ANNOTATION,
    REPLAY_ANNOTATION,
    CANCEL_ANNOTATION,
)


def requested(annotations: Mapping[str, str]) -> dict[str, str]:
    """The request annotations present, with their values stripped."""
    found = {key: annotations.get(key, "").strip() for key in _KEYS}
    return {key: value for key, value in found.items() if value}


def act_on(
    db: Connection,
    namespace: str,
    name: str,
    annotations: Mapping[str, str],
    *,
    last_resume: str | None,
    now: datetime,
) -> Requests:
    """Carry out every request the annotations hold that was not carried out before."""
    asked = requested(annotations)
    done = Requests(resumed=last_resume)
    if not asked:
        return done
    schedule = lookups.find_schedule(db, namespace, name)
    token = asked.get(TRIGGER_ANNOTATION)
    if token and requests.trigger_once(db, schedule, token=token, now=now) is not None:
        done.notices.append(Notice("Normal", "Triggered", f"planned a run now for token {token!r}"))
    if window := asked.get(BACKFILL_ANNOTATION):
        done.notices.extend(_backfill(db, schedule, window, now=now))
    if (token := asked.get(RESUME_ANNOTATION)) and token != last_resume:
        done.resumed = token
        if (reason := requests.resume(db, schedule, now=now)) is not None:
            message = f"lifted the pause after failures ({reason})"
            done.notices.append(Notice("Normal", "Resumed", message))
    if value := asked.get(REPLAY_ANNOTATION):
        done.notices.extend(_on_run(db, schedule, REPLAY_ANNOTATION, value, _replay, now=now))
    if value := asked.get(CANCEL_ANNOTATION):
        done.notices.extend(_on_run(db, schedule, CANCEL_ANNOTATION, value, _cancel, now=now))
    return done


def _backfill(
    db: Connection, schedule: lookups.ScheduleRef, window: str, *, now: datetime
) -> list[Notice]:
    bounds = _window(window)
    if bounds is None:
        detail = f"must be <from>/<to> as RFC 3339 times with an offset, got {window!r}"
        return [Notice("Warning", "InvalidBackfill", f"{BACKFILL_ANNOTATION}: {detail}")]
    try:
        moments = backfills.occurrences_between(schedule, *bounds, limit=backfills.MAX_BACKFILL)
    except lookups.RefusedError as exc:
        return [Notice("Warning", "InvalidBackfill", f"{BACKFILL_ANNOTATION}: {exc}")]
    planned = backfills.backfill(db, schedule, moments, now=now)
    if not planned:
        return []
    return [Notice("Normal", "Backfilled", f"planned {planned} run(s) in {window}")]


def _window(window: str) -> tuple[datetime, datetime] | None:
    """The ``<from>/<to>`` of a backfill annotation, or None unless both carry an offset."""
    start_text, slash, end_text = window.partition("/")
    try:
        start, end = datetime.fromisoformat(start_text), datetime.fromisoformat(end_text)
    except ValueError:
        return None
    if not slash or start.tzinfo is None or end.tzinfo is None:
        return None
    return start, end


_RunAction = Callable[[Connection, lookups.ScheduleRef, str, str, datetime], Notice | None]


def _on_run(
    db: Connection,
    schedule: lookups.ScheduleRef,
    key: str,
    value: str,
    action: _RunAction,
    *,
    now: datetime,
) -> list[Notice]:
    """Run ``action`` on the run a replay or cancel annotation names; a Warning if refused."""
    verb = "Replay" if key == REPLAY_ANNOTATION else "Cancel"
    request = run_request(value)
    if request is None:
        detail = f"must be <token>/<run id or its first 8+ characters>, got {value!r}"
        return [Notice("Warning", f"Invalid{verb}", f"{key}: {detail}")]
    token, prefix = request
    try:
        notice = action(db, schedule, token, prefix, now)
    except (lookups.NotFoundError, lookups.RefusedError) as exc:
        return [Notice("Warning", f"Invalid{verb}", f"{key}: {exc}")]
    return [] if notice is None else [notice]


def _replay(
    db: Connection, schedule: lookups.ScheduleRef, token: str, prefix: str, now: datetime
) -> Notice | None:
    run_id = lookups.find_run_id(db, prefix, schedule_id=schedule.id)
    replayed = requests.replay_once(db, run_id, token=token, now=now)
    if replayed is None:
        return None
    return Notice("Normal", "Replayed", f"planned run {replayed.run_id} to replay run {run_id}")


def _cancel(
    db: Connection, schedule: lookups.ScheduleRef, token: str, prefix: str, now: datetime
) -> Notice | None:
    run_id = lookups.find_run_id(db, prefix, schedule_id=schedule.id)
    reason = f"cancelled on request ({CANCEL_ANNOTATION}: {token})"
    done = cancellations.request(db, run_id, reason=reason, now=now)
    if done.asked is cancellations.Asked.CANCELLED:
        return Notice("Normal", "Cancelled", f"cancelled run {run_id}")
    if done.asked is cancellations.Asked.REQUESTED:
        where = done.worker or "a worker"
        message = f"cancel requested: run {run_id} is running on {where}; it will be stopped"
        return Notice("Normal", "CancelRequested", message)
    return None  # asked before: nothing new
