"""Cron schedules: the next occurrence of a Vixie cron expression in an IANA zone.

Written by hand rather than on top of croniter for speed: the Beat scheduler asks for
the next occurrence of every due schedule on every tick, and croniter's ``get_next``
costs 30-180 µs a call here (up to 390 µs for some expressions). Each field becomes a
lookup table ("the next allowed value at or after v") built once, and the search jumps
field by field - month, day, hour, minute, second - instead of stepping through
minutes, so a call costs a few microseconds (``benchmarks/recurrence.py`` keeps it at
least 5x faster than croniter), and an expression that can never fire is rejected when
it is parsed.

The search runs in local wall-clock time; :mod:`beatkeeper.recurrence.zones` turns wall
times into instants (RFC 5545 gap and fold rules). This module must stay pure: no I/O,
no clock reads, nothing beyond the standard library.
"""

from __future__ import annotations

import calendar
from datetime import datetime
from zoneinfo import ZoneInfo

from beatkeeper.recurrence import cron_syntax, zones

# A search that finds nothing within this many years returns None instead of looping
# (e.g. 29 February that must also be a Monday is rare but does come round).
HORIZON_YEARS = 100
_DAY_CACHE_LIMIT = 4096


def _next_table(allowed: frozenset[int], high: int) -> tuple[int, ...]:
    """Map every v in 0..high+1 to the smallest allowed value >= v, or -1 if none.

    The extra entry at high+1 is always -1, so a carry into the next unit is just
    "the field overflowed" without a separate bounds check.
    """
    table = [-1] * (high + 2)
    upcoming = -1
    for value in range(high, -1, -1):
        if value in allowed:
            upcoming = value
        table[value] = upcoming
    return tuple(table)


class CronTrigger:
    """Fires at every wall-clock time in ``zone`` that matches a cron expression."""

    def __init__(self, expression: str, zone: ZoneInfo) -> None:
        fields = cron_syntax.parse(expression)
        self.expression = expression.strip()
        self.zone = zone
        self._fields = fields
        self._seconds = _next_table(fields.seconds, 59)
        self._minutes = _next_table(fields.minutes, 59)
        self._hours = _next_table(fields.hours, 23)
        self._months = _next_table(fields.months, 12)
        self._either_day = fields.day_of_month_restricted and fields.day_of_week_restricted
        self._day_tables: dict[int, tuple[int, ...]] = {}

    def __repr__(self) -> str:
        return f"CronTrigger({self.expression!r}, {self.zone!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CronTrigger):
            return NotImplemented
        return (self._fields, self.zone) == (other._fields, other.zone)

    def __hash__(self) -> int:
        return hash((self._fields, self.zone))

    def describe(self) -> str:
        name = zones.zone_name(self.zone)
        suffix = "" if name == "UTC" else f" {name}"
        return f'cron "{self.expression}"{suffix}'

    def next_after(self, after: datetime) -> datetime | None:
        return zones.next_instant(after, self.zone, self.next_wall)

    def next_wall(self, start: datetime) -> datetime | None:
        """Return the first matching wall time at or after naive ``start`` (whole seconds).

        Each field is settled from the largest unit down; when a field has no allowed
        value left in its unit, the unit above is carried and the smaller ones reset.
        """
        year, month, day = start.year, start.month, start.day
        hour, minute, second = start.hour, start.minute, start.second
        if start.microsecond:
            second += 1  # callers pass whole seconds; be safe for anyone else
        limit = min(year + HORIZON_YEARS, 9999)
        months, hours, minutes, seconds = self._months, self._hours, self._minutes, self._seconds
        while year <= limit:
            value = months[month]
            if value < 0:
                year, month, day, hour, minute, second = year + 1, 1, 1, 0, 0, 0
                continue
            if value != month:
                month, day, hour, minute, second = value, 1, 0, 0, 0
            value = self._days(year, month)[day]
            if value < 0:
                month, day, hour, minute, second = month + 1, 1, 0, 0, 0
                continue
            if value != day:
                day, hour, minute, second = value, 0, 0, 0
            value = hours[hour]
            if value < 0:
                day, hour, minute, second = day + 1, 0, 0, 0
                continue
            if value != hour:
                hour, minute, second = value, 0, 0
            value = minutes[minute]
            if value < 0:
                hour, minute, second = hour + 1, 0, 0
                continue
            if value != minute:
                minute, second = value, 0
            value = seconds[second]
            if value < 0:
                minute, second = minute + 1, 0
                continue
            return datetime(year, month, day, hour, minute, value)  # noqa: DTZ001 - wall time
        return None

    def _days(self, year: int, month: int) -> tuple[int, ...]:
        """The next-matching-day table of one month (index 1..32), cached per month."""
        key = year * 16 + month
        table = self._day_tables.get(key)
        if table is None:
            if len(self._day_tables) >= _DAY_CACHE_LIMIT:
                self._day_tables.clear()
            table = self._day_tables[key] = self._build_days(year, month)
        return table

    def _build_days(self, year: int, month: int) -> tuple[int, ...]:
        fields = self._fields
        first_weekday, length = calendar.monthrange(year, month)  # Monday = 0
        allowed = set()
        for day in range(1, length + 1):
            by_date = day in fields.days_of_month
            by_weekday = (first_weekday + day) % 7 in fields.days_of_week  # Sunday = 0
            if (by_date or by_weekday) if self._either_day else (by_date and by_weekday):
                allowed.add(day)
        return _next_table(frozenset(allowed), 31)
