"""The instant an example task acts as of: now, or the ``now`` kwarg (tests, replays); and
the date and time-of-day kwargs, read with an error that names the kwarg.

``planned_instant`` prefers the occurrence a run was planned for (Beat's
``beatkeeper_planned_at`` header): a monthly allocation caught up after downtime then
counts for the month it belongs to, not for the month it happened to run in.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time

from celery import current_task

__all__ = ["calendar_date", "instant", "planned_instant", "time_of_day"]


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


def calendar_date(name: str, value: str) -> date:
    """The kwarg ``name`` as a date, or a ValueError naming it."""
    try:
        return date.fromisoformat(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}={value!r} is not a date: write it as 2026-03-01") from None


def time_of_day(name: str, value: str) -> time:
    """The kwarg ``name`` as a time of day, or a ValueError naming it."""
    try:
        return time.fromisoformat(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}={value!r} is not a time of day: write it as 06:45") from None
