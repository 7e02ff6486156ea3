"""The contract every kind of trigger (cron, RRULE, interval, at) fulfils.

A trigger answers one question — "when is the next occurrence strictly after this
instant?" — in constant time whatever the age of the schedule, and summarises itself in
one line for ``kubectl get``. Bounds, exclusions and jitter are not a trigger's business:
:class:`beatkeeper.recurrence.bounded.Recurrence` applies them to any trigger.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol, runtime_checkable


class RecurrenceError(ValueError):
    """A recurrence a user wrote cannot be used; ``str()`` says why in plain English."""


@runtime_checkable
class Trigger(Protocol):
    """Generates the nominal occurrences of a schedule, as aware UTC instants."""

    def next_after(self, after: datetime) -> datetime | None:
        """Return the first occurrence strictly after ``after`` (aware), or None."""
        ...

    def describe(self) -> str:
        """Return a short human summary, e.g. ``cron "0 9 * * 1-5" Europe/London``."""
        ...


def origin_of(trigger: Trigger) -> datetime | None:
    """Return the instant before which ``trigger`` never fires, if it has one.

    RRULE (DTSTART), interval (first) and at (the instant) have one; cron does not.
    It is an optional attribute ``not_before`` rather than part of the protocol so that
    a trigger written elsewhere needs only the two methods above.
    """
    value = getattr(trigger, "not_before", None)
    return value if isinstance(value, datetime) else None


def end_of(trigger: Trigger) -> datetime | None:
    """Return an instant after which ``trigger`` never fires, if it is finite.

    An optional attribute ``not_after`` (at, and RRULE with COUNT or UNTIL); it bounds
    the occurrences but need not be one.
    """
    value = getattr(trigger, "not_after", None)
    return value if isinstance(value, datetime) else None
