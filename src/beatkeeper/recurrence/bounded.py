"""A trigger inside a Schedule's bounds: start, end, maxRuns, exclusions and jitter.

:class:`Recurrence` is what the operator and the Beat scheduler ask "when next?". It adds
to any :class:`~beatkeeper.recurrence.trigger.Trigger` the limits a Schedule declares,
without ever walking time in small steps: an occurrence on an excluded local date or
month restarts the search at the next allowed local midnight, every search gives up 100
years ahead, and ``last()`` bisects instead of enumerating.

Pure: no clock reads (callers pass "now" as ``after``), no I/O, and jitter is a hash of
the schedule uid and the planned instant so every replica computes the same delay.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import cached_property
from zoneinfo import ZoneInfo

from beatkeeper.recurrence.trigger import RecurrenceError, Trigger, end_of, origin_of
from beatkeeper.recurrence.zones import MICROSECOND, require_aware, resolve_local

HORIZON = timedelta(days=36_525)  # a search finds nothing within 100 years: None
# No search starts later than this: it and its horizon stay within datetime's range.
_LAST_SEARCH = datetime(9899, 1, 1, tzinfo=UTC)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Recurrence:
    """The occurrences of ``trigger`` that a Schedule's bounds allow."""

    trigger: Trigger
    zone: ZoneInfo
    start: datetime | None = None  # no occurrence before it (one at start is allowed)
    end: datetime | None = None  # no occurrence after it (one at end is allowed)
    max_runs: int | None = None  # counted from the first occurrence at/after start
    exclude_dates: frozenset[date] = frozenset()  # local calendar dates in zone
    exclude_months: frozenset[int] = frozenset()  # 1..12, local months
    jitter: timedelta | None = None
    seed: str = ""  # the schedule uid

    def __post_init__(self) -> None:
        for name in ("start", "end"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, require_aware(value, name))
        if bad := sorted(month for month in self.exclude_months if not 1 <= month <= 12):
            msg = f"exclude months: {bad[0]} is not a month number (1-12)"
            raise RecurrenceError(msg)
        if self.jitter is not None and self.jitter < timedelta(0):
            msg = f"jitter must not be negative, got {self.jitter}"
            raise RecurrenceError(msg)
        if self.max_runs is not None and self.max_runs < 0:
            msg = f"maxRuns must not be negative, got {self.max_runs}"
            raise RecurrenceError(msg)
        if self.max_runs is not None and self._origin is None:
            msg = "max_runs needs a start for a trigger that has no beginning of its own (cron)"
            raise ValueError(msg)

    def next_after(self, after: datetime, *, planned_so_far: int | None = None) -> datetime | None:
        """The next occurrence strictly after ``after`` that the bounds allow, or None.

        ``planned_so_far`` is how many occurrences the scheduler already planned; None
        counts them from start instead (once per Recurrence, at most ``max_runs`` steps).
        """
        if self.max_runs is None:
            return self._next_allowed(after)
        if planned_so_far is not None:
            return self._next_allowed(after) if planned_so_far < self.max_runs else None
        last_counted, complete = self._counted
        if self.max_runs == 0 or last_counted is None:
            return None
        candidate = self._next_allowed(after)
        if candidate is None or (complete and candidate > last_counted):
            return None
        return candidate

    def occurrences(
        self, after: datetime, count: int, *, planned_so_far: int | None = None
    ) -> list[datetime]:
        """The next ``count`` occurrences after ``after`` (fewer if the schedule ends)."""
        found: list[datetime] = []
        moment = after
        while len(found) < count:
            upcoming = self.next_after(moment, planned_so_far=planned_so_far)
            if upcoming is None:
                break
            found.append(upcoming)
            moment = upcoming
            if planned_so_far is not None:
                planned_so_far += 1
        return found

    def jitter_for(self, planned: datetime) -> timedelta:
        """A delay in [0, jitter] that depends only on the seed and the planned instant.

        hashlib rather than ``hash()``: string hashing is salted per process, and every
        scheduler replica must compute the same delay.
        """
        if not self.jitter:
            return timedelta(0)
        instant = require_aware(planned, "planned").isoformat()
        digest = hashlib.sha256(f"{self.seed}|{instant}".encode()).digest()
        span = self.jitter // MICROSECOND
        return timedelta(microseconds=int.from_bytes(digest[:8], "big") % (span + 1))

    def first(self) -> datetime | None:
        """The first occurrence at/after start (a cron without start: since 1970)."""
        if self.max_runs == 0:
            return None
        return self._next_allowed((self._origin or _EPOCH) - MICROSECOND)

    def last(self) -> datetime | None:
        """The last occurrence of a finite schedule; None if it never ends (or never fires).

        With ``max_runs`` this counts up to ``max_runs`` occurrences once; otherwise it
        bisects below the end, so the cost does not depend on how dense the schedule is.
        """
        if self.max_runs is not None:
            return self._counted[0]
        bounds = [bound for bound in (self.end, end_of(self.trigger)) if bound is not None]
        return self._last_at_or_before(min(bounds)) if bounds else None

    def ended_by(self, moment: datetime) -> datetime | None:
        """The last occurrence if it is at or before ``moment``, else None.

        What validation asks ("is this schedule already over?"): with ``max_runs`` it counts
        only the occurrences up to ``moment``, so a schedule starting in the future costs
        nothing to check, where ``last()`` would count all ``max_runs`` of them.
        """
        moment = require_aware(moment, "moment")
        if self.max_runs is None:
            last = self.last()
            return last if last is not None and last <= moment else None
        seen, last = 0, None
        cursor = (self._origin or _EPOCH) - MICROSECOND
        while seen < self.max_runs:
            upcoming = self._next_allowed(cursor)
            if upcoming is None:
                return last
            if upcoming > moment:
                return None
            last = cursor = upcoming
            seen += 1
        return last

    @property
    def _origin(self) -> datetime | None:
        return self.start if self.start is not None else origin_of(self.trigger)

    @cached_property
    def _counted(self) -> tuple[datetime | None, bool]:
        """The ``max_runs``-th occurrence (or the last one if fewer), and whether reached."""
        assert self.max_runs is not None
        seen = 0
        last: datetime | None = None
        moment = (self._origin or _EPOCH) - MICROSECOND
        while seen < self.max_runs:
            upcoming = self._next_allowed(moment)
            if upcoming is None:
                return last, False
            last = moment = upcoming
            seen += 1
        return last, True

    def _next_allowed(self, after: datetime) -> datetime | None:
        moment = require_aware(after, "after")
        if self.start is not None and moment < self.start:
            moment = self.start - MICROSECOND
        if moment >= _LAST_SEARCH:
            return None
        horizon = moment + HORIZON
        while True:
            upcoming = self.trigger.next_after(moment)
            if upcoming is None or upcoming > horizon:
                return None
            upcoming = upcoming.astimezone(UTC)
            if self.end is not None and upcoming > self.end:
                return None
            if not (self.exclude_dates or self.exclude_months):
                return upcoming
            day = upcoming.astimezone(self.zone).date()
            allowed = self._next_included_day(day)
            if allowed == day:
                return upcoming
            if allowed is None:
                return None
            # Skip the whole excluded stretch at once, to the first allowed local midnight.
            if allowed.year >= _LAST_SEARCH.year:
                return None
            moment = resolve_local(datetime.combine(allowed, time()), self.zone) - MICROSECOND

    def _next_included_day(self, day: date) -> date | None:
        if len(self.exclude_months) >= 12:
            return None
        while day.month in self.exclude_months or day in self.exclude_dates:
            if day.month in self.exclude_months:
                if day.year == date.max.year and day.month == 12:
                    return None
                day = date(day.year + day.month // 12, day.month % 12 + 1, 1)
            elif day == date.max:
                return None
            else:
                day += timedelta(days=1)
        return day

    def _last_at_or_before(self, cutoff: datetime) -> datetime | None:
        """Bisect for the latest ``t`` whose next allowed occurrence is still <= cutoff."""

        def fires_by_cutoff(moment: datetime) -> bool:
            upcoming = self._next_allowed(moment)
            return upcoming is not None and upcoming <= cutoff

        lowest = (self._origin or cutoff - HORIZON) - MICROSECOND
        if lowest >= cutoff or not fires_by_cutoff(lowest):
            return None
        step = timedelta(hours=1)
        low = cutoff - step
        while low > lowest and not fires_by_cutoff(low):
            step *= 2
            low = cutoff - step
        low, high = max(low, lowest), cutoff
        while high - low > MICROSECOND:
            middle = low + (high - low) // 2
            if fires_by_cutoff(middle):
                low = middle
            else:
                high = middle
        return self._next_allowed(low)
