"""Parse Vixie cron syntax into the allowed values of each field.

Five fields (minute hour day-of-month month day-of-week) or six with seconds first;
``*``, numbers, ranges, steps (``*/n``, ``a-b/n``, ``a/n`` = ``a-max/n``), lists, month
and day names, 0 and 7 both Sunday, and the ``@yearly`` … ``@hourly`` macros.

Every error a user can make is a :class:`RecurrenceError` that names the field, because
the message is shown verbatim in the Schedule's status. This module only parses: it must
not compute occurrences (see :mod:`beatkeeper.recurrence.cron`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from beatkeeper.recurrence.trigger import RecurrenceError

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
MONTH_NAMES = dict(zip(_MONTHS, range(1, 13), strict=True))
DAY_NAMES = dict(zip(_DAYS, range(7), strict=True))
# The longest each month can be (February in a leap year), to spot "0 0 30 2 *".
MAX_MONTH_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_QUARTZ = re.compile(r"\?|L|LW|\d+[LW]|[A-Z]{3}L|.*#.*")
_QUARTZ_HINT = (
    "Quartz syntax, not cron; write an rrule for last-day, nearest-weekday or "
    "nth-weekday schedules (for example FREQ=MONTHLY;BYDAY=-1FR)"
)


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: dict[str, int] | None = None


_SECOND = _Field("second", 0, 59)
_DAY_OF_WEEK = _Field("day-of-week", 0, 7, DAY_NAMES)
_FIVE = (
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day-of-month", 1, 31),
    _Field("month", 1, 12, MONTH_NAMES),
    _DAY_OF_WEEK,
)


@dataclass(frozen=True)
class CronFields:
    """The allowed values of each field, and whether the day fields restrict days."""

    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days_of_month: frozenset[int]
    months: frozenset[int]
    days_of_week: frozenset[int]  # 0 = Sunday … 6 = Saturday (7 folded into 0)
    day_of_month_restricted: bool  # the field does not start with "*" (Vixie rule)
    day_of_week_restricted: bool


def parse(expression: str) -> CronFields:
    """Parse a cron expression; raise RecurrenceError naming the faulty field."""
    text = expression.strip()
    if text.startswith("@"):
        text = _expand_macro(text)
    parts = text.split()
    if len(parts) == 5:
        parts.insert(0, "0")
    elif len(parts) != 6:
        msg = (
            f"cron expression {expression!r} has {len(parts)} fields; expected 5 "
            "(minute hour day-of-month month day-of-week) or 6 with seconds first"
        )
        raise RecurrenceError(msg)
    values = [
        _parse_field(part, field) for part, field in zip(parts, (_SECOND, *_FIVE), strict=True)
    ]
    fields = CronFields(
        seconds=values[0],
        minutes=values[1],
        hours=values[2],
        days_of_month=values[3],
        months=values[4],
        days_of_week=frozenset(day % 7 for day in values[5]),
        day_of_month_restricted=not parts[3].startswith("*"),
        day_of_week_restricted=not parts[5].startswith("*"),
    )
    _check_fires(fields)
    return fields


def _expand_macro(text: str) -> str:
    macro = text.lower()
    if macro == "@reboot":
        msg = "cron @reboot is not supported: beatkeeper plans clock times, not process starts"
        raise RecurrenceError(msg)
    if macro not in MACROS:
        known = " ".join(MACROS)
        msg = f"cron macro {text!r} is unknown; use one of {known}"
        raise RecurrenceError(msg)
    return MACROS[macro]


def _parse_field(text: str, field: _Field) -> frozenset[int]:
    values: set[int] = set()
    for item in text.split(","):
        if not item:
            msg = f"{field.name} field: {text!r} has an empty list item"
            raise RecurrenceError(msg)
        values.update(_parse_item(item, field))
    return frozenset(values)


def _parse_item(item: str, field: _Field) -> range:
    base, slash, step_text = item.partition("/")
    step = 1
    if slash:
        step = _number(step_text, field, "step")
        if step == 0:
            msg = f"{field.name} field: step 0 in {item!r} must be at least 1"
            raise RecurrenceError(msg)
    if base == "*":
        return range(field.low, field.high + 1, step)
    if base.startswith("-") and base[1:].isdigit():
        msg = (
            f"{field.name} field: {base} is not a valid {field.name} (cron has no negative values)"
        )
        raise RecurrenceError(msg)
    first_text, dash, last_text = base.partition("-")
    if dash and not (first_text and last_text):
        msg = f"{field.name} field: range {base!r} needs a number on each side of '-'"
        raise RecurrenceError(msg)
    first = _value(first_text, field)
    if not dash:
        return range(first, (field.high if slash else first) + 1, step)
    last = _value(last_text, field)
    if field is _DAY_OF_WEEK and first > last == 0 and last_text.upper() == "SUN":
        last = 7  # SAT-SUN reads as Saturday to Sunday, as 6-7 does
    if first > last:
        msg = f"{field.name} field: range {base} is reversed (write the smaller value first)"
        raise RecurrenceError(msg)
    return range(first, last + 1, step)


def _value(token: str, field: _Field) -> int:
    upper = token.upper()
    if field.names is not None and upper in field.names:
        return field.names[upper]
    if token.isascii() and token.isdigit():
        value = int(token)
        if not field.low <= value <= field.high:
            msg = f"{field.name} field: {value} is out of range {field.low}-{field.high}"
            raise RecurrenceError(msg)
        return value
    if _QUARTZ.fullmatch(upper):
        msg = f"{field.name} field: {token!r} is {_QUARTZ_HINT}"
        raise RecurrenceError(msg)
    expected = f"a number {field.low}-{field.high}"
    if field.names is not None:
        names = list(field.names)
        expected += f" or a name {names[0]}-{names[-1]}"
    msg = f"{field.name} field: {token!r} is not {expected}"
    raise RecurrenceError(msg)


def _number(token: str, field: _Field, what: str) -> int:
    if not (token.isascii() and token.isdigit()):
        msg = f"{field.name} field: {what} {token!r} is not a whole number"
        raise RecurrenceError(msg)
    return int(token)


def _check_fires(fields: CronFields) -> None:
    """Reject day/month combinations that no calendar ever has, such as 30 February.

    With both day fields restricted a day matches if either does, and every month has
    every weekday, so only the day-of-month-alone case can be impossible.
    """
    if fields.day_of_month_restricted and fields.day_of_week_restricted:
        return
    longest = max(MAX_MONTH_DAYS[month - 1] for month in fields.months)
    if min(fields.days_of_month) <= longest:
        return
    days = ",".join(str(day) for day in sorted(fields.days_of_month))
    months = ",".join(_MONTHS[month - 1] for month in sorted(fields.months))
    msg = f"never fires: day-of-month {days} never occurs in {months}"
    raise RecurrenceError(msg)
