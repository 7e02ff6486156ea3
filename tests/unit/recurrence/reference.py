"""Slow, obviously-correct references that the fast recurrence engine is checked against.

Nothing here shares code with ``beatkeeper.recurrence``: cron fields arrive as plain
sets (built by the test strategies, not parsed), every wall-clock minute of a window is
visited one by one, each match is resolved with ``fold=0`` and duplicates are dropped.
RRULEs are iterated by plain dateutil from DTSTART, as dateutil means them to be.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from dateutil import rrule

ZONES = (
    "UTC",
    "Europe/London",
    "Europe/Berlin",
    "America/New_York",
    "America/Sao_Paulo",
    "America/Santiago",
    "America/St_Johns",
    "Australia/Lord_Howe",
    "Asia/Kolkata",
    "Pacific/Apia",
)
MINUTE = timedelta(minutes=1)
# Set BEATKEEPER_TEST_EXAMPLES_SCALE=20 for a deep run of the property tests.
_SCALE = float(os.environ.get("BEATKEEPER_TEST_EXAMPLES_SCALE", "1"))


def examples(count: int) -> int:
    """Hypothesis ``max_examples``, scaled for deep runs."""
    return max(1, int(count * _SCALE))


MARGIN = timedelta(hours=26)  # more than the largest offset jump (Apia: 24 h)


@dataclass(frozen=True)
class CronSets:
    """The meaning of a cron expression, given directly as sets."""

    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days_of_month: frozenset[int]
    months: frozenset[int]
    days_of_week: frozenset[int]  # 0 = Sunday; 7 may appear and means Sunday too
    day_of_month_restricted: bool
    day_of_week_restricted: bool

    def matches_day(self, wall: datetime) -> bool:
        by_date = wall.day in self.days_of_month
        cron_weekday = (wall.isoweekday()) % 7  # Monday 1 … Saturday 6, Sunday 0
        by_weekday = cron_weekday in self.days_of_week or (
            cron_weekday == 0 and 7 in self.days_of_week
        )
        if self.day_of_month_restricted and self.day_of_week_restricted:
            return by_date or by_weekday
        return by_date and by_weekday

    def matches_minute(self, wall: datetime) -> bool:
        return (
            wall.month in self.months
            and wall.hour in self.hours
            and wall.minute in self.minutes
            and self.matches_day(wall)
        )


def resolve(wall: datetime, zone: ZoneInfo) -> datetime:
    return wall.replace(tzinfo=zone, fold=0).astimezone(UTC)


def local_wall(instant: datetime, zone: ZoneInfo) -> datetime:
    return instant.astimezone(zone).replace(tzinfo=None)


def instants_in(
    walls: Iterable[datetime], zone: ZoneInfo, after: datetime, until: datetime
) -> list[datetime]:
    """Resolve wall times, keep those in (after, until], drop duplicates, sort."""
    return sorted({i for i in (resolve(w, zone) for w in walls) if after < i <= until})


def cron_occurrences(
    sets: CronSets, zone: ZoneInfo, after: datetime, until: datetime
) -> list[datetime]:
    """Every occurrence in (after, until], by visiting each wall-clock minute."""
    wall = local_wall(after - MARGIN, zone).replace(second=0, microsecond=0)
    last_wall = local_wall(until + MARGIN, zone)
    walls = []
    while wall <= last_wall:
        if sets.matches_minute(wall):
            walls.extend(wall.replace(second=second) for second in sets.seconds)
        wall += MINUTE
    return instants_in(walls, zone, after, until)


def rrule_occurrences(
    text: str,
    dtstart: datetime,
    zone: ZoneInfo,
    after: datetime,
    until: datetime,
    *,
    not_after: datetime | None = None,
    limit: int = 200_000,
) -> list[datetime]:
    """Every occurrence in (after, until], iterating plain dateutil from DTSTART.

    ``not_after`` stands for a UTC UNTIL, which plain dateutil refuses with a naive DTSTART.
    """
    last_wall = local_wall(until + MARGIN, zone)
    walls = []
    for wall in rrule.rrulestr(text, dtstart=dtstart):
        if wall > last_wall:
            break
        walls.append(wall)
        assert len(walls) < limit, "rule too dense for a test"
    return instants_in(walls, zone, after, min(until, not_after or until))


@functools.cache
def transitions(
    zone_name: str, first_year: int = 2005, last_year: int = 2030
) -> tuple[datetime, ...]:
    """Instants where the zone's UTC offset changes, found by daily steps then bisection."""
    zone = ZoneInfo(zone_name)
    found = []
    moment = datetime(first_year, 1, 1, tzinfo=UTC)
    end = datetime(last_year + 1, 1, 1, tzinfo=UTC)
    offset = moment.astimezone(zone).utcoffset()
    while moment < end:
        following = moment + timedelta(days=1)
        next_offset = following.astimezone(zone).utcoffset()
        if next_offset != offset:
            low, high = moment, following
            while high - low > timedelta(seconds=1):
                middle = low + (high - low) / 2
                if middle.astimezone(zone).utcoffset() == next_offset:
                    high = middle
                else:
                    low = middle
            found.append(high.replace(microsecond=0))
            offset = next_offset
        moment = following
    return tuple(found)


def occurrences_of(
    trigger: object, after: datetime, until: datetime, limit: int = 100_000
) -> list[datetime]:
    """Iterate ``trigger.next_after`` over (after, until]."""
    found: list[datetime] = []
    moment = after
    while True:
        upcoming = trigger.next_after(moment)  # type: ignore[attr-defined]
        if upcoming is None or upcoming > until:
            return found
        found.append(upcoming)
        moment = upcoming
        assert len(found) < limit, "window too dense for a test"
