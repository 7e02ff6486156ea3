"""The instant an example task acts as of: now, or the ``now`` kwarg (tests, replays).

``planned_instant`` prefers the occurrence a run was planned for (Beat's
``beatkeeper_planned_at`` header): a monthly allocation caught up after downtime then
counts for the month it belongs to, not for the month it happened to run in.
"""

from __future__ import annotations

from datetime import UTC, datetime

from celery import current_task

__all__ = ["instant", "planned_instant"]


def instant(now: str | None) -> datetime:
    """``now`` (an RFC 3339 time with an offset) as an aware datetime; None is the clock."""
    if now is None:
        return datetime.now(UTC)
    parsed = datetime.fromisoformat(now)
    if parsed.tzinfo is None:
        raise ValueError(f"now={now!r} has no UTC offset: write it as 2026-03-01T09:00:00+00:00")
    return parsed


def planned_instant(now: str | None) -> datetime:
    """``now`` if given, else the running run's planned instant, else the clock."""
    if now is None and current_task is not None:
        planned = getattr(current_task.request, "beatkeeper_planned_at", None)
        if isinstance(planned, str):
            return instant(planned)
    return instant(now)
