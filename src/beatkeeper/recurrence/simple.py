"""Interval and one-shot triggers: elapsed time, no calendar, no time zone.

An interval fires at ``first + k * every`` (k >= 0) in *elapsed* time, so it ignores
DST by design; the next occurrence comes from one integer division, whatever the age of
the schedule. An at-trigger fires once. Neither may read the clock: "now" is always the
caller's ``after``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from beatkeeper.recurrence.trigger import RecurrenceError
from beatkeeper.recurrence.zones import require_aware

_UNITS = (("w", timedelta(weeks=1)), ("d", timedelta(days=1)), ("h", timedelta(hours=1)))
_SMALL_UNITS = (("m", timedelta(minutes=1)), ("s", timedelta(seconds=1)))


def format_duration(duration: timedelta) -> str:
    """Render a duration the way Schedule specs write them: ``90s`` → ``1m30s``, ``1w``."""
    rest = duration
    parts = []
    for suffix, unit in (*_UNITS, *_SMALL_UNITS):
        count, rest = divmod(rest, unit)
        if count:
            parts.append(f"{count}{suffix}")
    if rest:
        micros = rest // timedelta(microseconds=1)
        parts.append(f"{micros // 1000}ms" if micros % 1000 == 0 else f"{micros}us")
    return "".join(parts) or "0s"


@dataclass(frozen=True)
class IntervalTrigger:
    """Fires at ``first``, then every ``every`` of elapsed time after it."""

    every: timedelta
    first: datetime

    def __post_init__(self) -> None:
        if self.every <= timedelta(0):
            msg = f"interval must be positive, got {self.every}"
            raise RecurrenceError(msg)
        object.__setattr__(self, "first", require_aware(self.first, "first"))

    @property
    def not_before(self) -> datetime:
        return self.first

    def next_after(self, after: datetime) -> datetime | None:
        moment = require_aware(after, "after")
        if moment < self.first:
            return self.first
        return self.first + ((moment - self.first) // self.every + 1) * self.every

    def describe(self) -> str:
        return f"every {format_duration(self.every)}"


@dataclass(frozen=True)
class AtTrigger:
    """Fires once, at ``instant``."""

    instant: datetime

    def __post_init__(self) -> None:
        object.__setattr__(self, "instant", require_aware(self.instant, "instant"))

    @property
    def not_before(self) -> datetime:
        return self.instant

    @property
    def not_after(self) -> datetime:
        return self.instant

    def next_after(self, after: datetime) -> datetime | None:
        return self.instant if self.instant > require_aware(after, "after") else None

    def describe(self) -> str:
        text = self.instant.astimezone(UTC).isoformat().replace("+00:00", "Z")
        return f"at {text}"
