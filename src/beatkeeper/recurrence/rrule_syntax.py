"""Check an RFC 5545 RRULE line and split it into its parts before dateutil sees it.

dateutil parses the values; this module catches what dateutil would accept silently or
report cryptically — a DTSTART/RDATE/EXDATE inside the text (the start comes from the
Schedule's ``startTime``), COUNT together with UNTIL, out-of-range BYxxx numbers — and
reads UNTIL itself, because a ``Z`` UNTIL is an instant while dateutil compares it with
naive wall times. Every error is a :class:`RecurrenceError` naming the part.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from dateutil import rrule as du

from beatkeeper.recurrence.trigger import RecurrenceError

FREQUENCIES = {
    "YEARLY": du.YEARLY,
    "MONTHLY": du.MONTHLY,
    "WEEKLY": du.WEEKLY,
    "DAILY": du.DAILY,
    "HOURLY": du.HOURLY,
    "MINUTELY": du.MINUTELY,
    "SECONDLY": du.SECONDLY,
}
WEEKDAYS = {"MO": 0, "TU": 1, "WE": 2, "TH": 3, "FR": 4, "SA": 5, "SU": 6}
# Allowed magnitude of each numeric BYxxx value (negative values count from the end).
_RANGES = {
    "BYSECOND": (0, 59, False),
    "BYMINUTE": (0, 59, False),
    "BYHOUR": (0, 23, False),
    "BYMONTH": (1, 12, False),
    "BYMONTHDAY": (1, 31, True),
    "BYYEARDAY": (1, 366, True),
    "BYWEEKNO": (1, 53, True),
    "BYSETPOS": (1, 366, True),
}
_OTHER_PARTS = {"FREQ", "INTERVAL", "COUNT", "UNTIL", "BYDAY", "WKST"}
_NOT_HERE = ("DTSTART", "RDATE", "EXDATE", "EXRULE")
_UNTIL = re.compile(r"(\d{4})(\d{2})(\d{2})(?:T(\d{2})(\d{2})(\d{2}))?(Z?)")
COUNT_LIMIT = 100_000
#: INTERVAL may span at most about 100 years of its FREQ (larger ones overflow dateutil).
INTERVAL_LIMITS = {
    "YEARLY": 100,
    "MONTHLY": 1_200,
    "WEEKLY": 5_218,
    "DAILY": 36_525,
    "HOURLY": 876_600,
    "MINUTELY": 52_596_000,
    "SECONDLY": 2_147_483_647 // 2,
}


@dataclass(frozen=True)
class RuleParts:
    """One RRULE line, checked: the text to hand dateutil (without UNTIL) and the rest."""

    text: str  # normalised: upper case, no "RRULE:" prefix, parts in the user's order
    dateutil_text: str  # the same without UNTIL
    names: frozenset[str]
    freq: int
    interval: int
    wkst: int
    count: int | None
    until: datetime | None  # aware UTC if written with Z, else a naive local wall time


def parse(rule: str) -> RuleParts:
    """Check one RRULE line; raise RecurrenceError naming the faulty part."""
    line = _single_line(rule)
    values: dict[str, str] = {}
    for part in line.split(";"):
        name, equals, value = part.partition("=")
        _check_part(part, name, equals, value)
        if name in values:
            msg = f"rrule: {name} appears twice"
            raise RecurrenceError(msg)
        values[name] = value
    if "FREQ" not in values:
        msg = "rrule: FREQ is required, e.g. FREQ=WEEKLY;BYDAY=MO,WE"
        raise RecurrenceError(msg)
    if values["FREQ"] not in FREQUENCIES:
        msg = f"rrule: FREQ={values['FREQ']} is not one of {', '.join(FREQUENCIES)}"
        raise RecurrenceError(msg)
    if "COUNT" in values and "UNTIL" in values:
        msg = "rrule: COUNT and UNTIL cannot be used together (RFC 5545); keep one"
        raise RecurrenceError(msg)
    for name, (low, high, signed) in _RANGES.items():
        if name in values:
            _check_numbers(name, values[name], low, high, signed=signed)
    return RuleParts(
        text=line,
        dateutil_text=";".join(f"{k}={v}" for k, v in values.items() if k != "UNTIL"),
        names=frozenset(values),
        freq=FREQUENCIES[values["FREQ"]],
        interval=_interval(values),
        wkst=_weekday(values.get("WKST", "MO")),
        count=_count(values),
        until=_until(values["UNTIL"]) if "UNTIL" in values else None,
    )


def _single_line(rule: str) -> str:
    lines = [line.strip().upper() for line in rule.strip().splitlines() if line.strip()]
    for line in lines:
        for name in _NOT_HERE:
            if line.startswith(name) or f";{name}=" in line or f":{name}=" in line:
                _refuse(name)
    if len(lines) != 1:
        msg = "rrule: give exactly one RRULE line, e.g. FREQ=WEEKLY;BYDAY=MO,WE"
        raise RecurrenceError(msg)
    return lines[0].removeprefix("RRULE:")


def _refuse(name: str) -> None:
    msg = (
        f"rrule: {name} is not allowed in the rule; the start comes from startTime "
        "(read in timeZone), and dates to skip go in exclude"
    )
    raise RecurrenceError(msg)


def _check_part(part: str, name: str, equals: str, value: str) -> None:
    if name in _NOT_HERE:
        _refuse(name)
    if name == "BYEASTER":
        msg = "rrule: BYEASTER is a dateutil extension, not RFC 5545, and is not supported"
        raise RecurrenceError(msg)
    if not equals or not value:
        msg = f"rrule: {part!r} is not NAME=VALUE"
        raise RecurrenceError(msg)
    if name not in _RANGES and name not in _OTHER_PARTS:
        msg = f"rrule: unknown part {name}"
        raise RecurrenceError(msg)


def _check_numbers(name: str, text: str, low: int, high: int, *, signed: bool) -> None:
    for item in text.split(","):
        digits = item[1:] if signed and item[:1] in "+-" else item
        if not (digits.isascii() and digits.isdigit()) or not low <= int(digits) <= high:
            span = f"{low}-{high}" + (f" or -{high}--{low}" if signed else "")
            msg = f"rrule {name}: {item!r} is out of range {span}"
            raise RecurrenceError(msg)


def _positive(values: dict[str, str], name: str, default: int) -> int:
    text = values.get(name, str(default))
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        msg = f"rrule {name}: {text!r} must be a whole number of at least 1"
        raise RecurrenceError(msg)
    return int(text)


def _interval(values: dict[str, str]) -> int:
    interval = _positive(values, "INTERVAL", 1)
    limit = INTERVAL_LIMITS[values["FREQ"]]
    if interval > limit:
        msg = (
            f"rrule INTERVAL: {interval} is more than {limit:,} (about 100 years of "
            f"FREQ={values['FREQ']})"
        )
        raise RecurrenceError(msg)
    return interval


def _count(values: dict[str, str]) -> int | None:
    if "COUNT" not in values:
        return None
    count = _positive(values, "COUNT", 1)
    if count > COUNT_LIMIT:
        msg = f"rrule COUNT: {count} is more than {COUNT_LIMIT}; use UNTIL, or maxRuns instead"
        raise RecurrenceError(msg)
    return count


def _weekday(text: str) -> int:
    if text not in WEEKDAYS:
        msg = f"rrule WKST: {text!r} is not one of {', '.join(WEEKDAYS)}"
        raise RecurrenceError(msg)
    return WEEKDAYS[text]


def _until(text: str) -> datetime:
    """A ``Z`` UNTIL is an instant; otherwise a local wall time (a date means its end)."""
    match = _UNTIL.fullmatch(text)
    if match is None:
        msg = (
            f"rrule UNTIL: {text!r} must look like 20261231T235959Z (UTC) or "
            "20261231T235959 (local time in timeZone)"
        )
        raise RecurrenceError(msg)
    year, month, day, hour, minute, second, zulu = match.groups()
    try:
        clock = (23, 59, 59) if hour is None else (int(hour), int(minute), int(second))
        wall = datetime(int(year), int(month), int(day), *clock)  # noqa: DTZ001 - wall time
    except ValueError as error:
        msg = f"rrule UNTIL: {text!r} is not a valid date and time ({error})"
        raise RecurrenceError(msg) from None
    return wall.replace(tzinfo=UTC) if zulu else wall
