"""Field types shared by the Schedule models: durations, times, zones and JSON values.

Each type validates strictly (a duration must be text like ``15m``, never a bare number)
and carries the OpenAPI schema the CRD publishes for it, so the CRD and the validator
cannot disagree. Pure: pydantic and the standard library only.
"""

from __future__ import annotations

import functools
from datetime import date, datetime, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

from beatkeeper.durations import DURATION_PATTERN, format_duration, parse_duration


def _duration(value: object) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if not isinstance(value, str):
        raise ValueError(f"must be a duration such as 15m or 1h30m, got {value!r}")
    return parse_duration(value)


def _positive_duration(value: object) -> timedelta:
    result = _duration(value)
    if result <= timedelta(0):
        raise ValueError("must be longer than 0s")
    return result


#: Times a Schedule may name: from the Unix epoch to well before datetime's year 9999,
#: so that a search 100 years ahead of any of them, in any zone, stays representable.
EARLIEST_YEAR, LATEST_YEAR = 1970, 9000
#: Zone names that depend on the host rather than on the IANA database.
_HOST_ZONES = {"localtime", "posixrules", "Factory"}


def parse_time(value: object) -> datetime:
    """An RFC 3339 instant, or a local wall time (no offset) read later in the time zone.

    Raises ``ValueError`` for a time outside years ``EARLIEST_YEAR``-``LATEST_YEAR``.
    """
    result = _read_time(value)
    if not EARLIEST_YEAR <= result.year < LATEST_YEAR:
        raise ValueError(
            f"{str(value).strip()} is out of range: times must lie between "
            f"{EARLIEST_YEAR}-01-01 and {LATEST_YEAR}-01-01"
        )
    return result


def _read_time(value: object) -> datetime:
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)  # noqa: DTZ001 - local on purpose
    if not isinstance(value, str):
        raise ValueError(f"must be a time such as 2026-01-31T09:00:00Z, got {value!r}")
    try:
        return datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(
            f"{value!r} is not a time: write RFC 3339 (2026-01-31T09:00:00Z, "
            "2026-01-31T09:00:00+01:00) or a local time (2026-01-31T09:00:00)"
        ) from None


def _instant(value: object) -> datetime:
    result = parse_time(value)
    if result.tzinfo is None:
        raise ValueError(
            f"{value!r} has no UTC offset: write 2026-01-31T09:00:00Z or 2026-01-31T09:00:00+01:00"
        )
    return result


def _zone_name(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be an IANA time zone name such as Europe/London, got {value!r}")
    if value in _HOST_ZONES or value.startswith(("right/", "posix/")):
        raise ValueError(
            f"{value!r} depends on the host's time zone files; name the zone itself "
            "(e.g. UTC, Europe/London)"
        )
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        hint = _zone_hint(value)
        raise ValueError(f"{value!r} is not an IANA time zone name{hint}") from None
    return value


@functools.cache
def _zone_names() -> frozenset[str]:
    """The IANA names this host's tz database has (scanning it takes milliseconds: once)."""
    return frozenset(available_timezones())


def _zone_hint(value: str) -> str:
    lowered = value.lower()
    names = _zone_names() - _HOST_ZONES
    matches = sorted(z for z in names if z.lower() == lowered)
    if not matches:
        matches = sorted(z for z in names if z.lower().endswith("/" + lowered))
    return f" (did you mean {matches[0]}?)" if matches else " (e.g. UTC, Europe/London)"


def _time_text(value: datetime) -> str:
    return value.isoformat()


_DURATION_SCHEMA = {"type": "string", "pattern": DURATION_PATTERN, "maxLength": 32}
_TIME_SCHEMA = {"type": "string", "maxLength": 64}

Duration = Annotated[
    timedelta,
    BeforeValidator(_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema(_DURATION_SCHEMA),
]
PositiveDuration = Annotated[
    timedelta,
    BeforeValidator(_positive_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema(_DURATION_SCHEMA),
]
LocalOrInstant = Annotated[
    datetime,
    BeforeValidator(parse_time),
    PlainSerializer(_time_text, return_type=str),
    WithJsonSchema(_TIME_SCHEMA),
]
Instant = Annotated[
    datetime,
    BeforeValidator(_instant),
    PlainSerializer(_time_text, return_type=str),
    WithJsonSchema(_TIME_SCHEMA),
]
ZoneName = Annotated[
    str,
    BeforeValidator(_zone_name),
    WithJsonSchema({"type": "string", "maxLength": 64}),
]
JsonList = Annotated[
    list[Any],
    WithJsonSchema(
        {
            "type": "array",
            "maxItems": 1024,
            "items": {"x-kubernetes-preserve-unknown-fields": True},
        }
    ),
]
JsonObject = Annotated[
    dict[str, Any],
    WithJsonSchema({"type": "object", "x-kubernetes-preserve-unknown-fields": True}),
]


def _date(value: object) -> date:
    if isinstance(value, datetime):
        raise ValueError(f"must be a calendar date such as 2026-12-25, got {value!r}")
    if isinstance(value, date):
        return value
    if not isinstance(value, str):
        raise ValueError(f"must be a calendar date such as 2026-12-25, got {value!r}")
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(f"{value!r} is not a calendar date such as 2026-12-25") from None


LocalDate = Annotated[
    date,
    BeforeValidator(_date),
    PlainSerializer(date.isoformat, return_type=str),
    WithJsonSchema({"type": "string", "format": "date", "maxLength": 10}),
]
