"""From a Schedule spec to its `Recurrence`: the one place that reads the timing fields.

The scheduler, the validator and `beatkeeper preview` all call `recurrence_of`, so a
startTime, a time zone or an exclusion means the same thing everywhere. Anchors: interval
and rrule start at `startTime`, or else at the schedule's creation (an rrule on its
whole minute); an interval without a
startTime first fires one interval after creation. Pure: no I/O.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from beatkeeper.recurrence import (
    AtTrigger,
    CronTrigger,
    IntervalTrigger,
    Recurrence,
    RRuleTrigger,
    Trigger,
    resolve_local,
)
from beatkeeper.spec.model import ScheduleSpec


def recurrence_of(spec: ScheduleSpec, *, seed: str, created_at: datetime) -> Recurrence:
    """The occurrences of `spec`; `created_at` anchors what `startTime` leaves open."""
    zone = ZoneInfo(spec.time_zone)
    created = created_at.astimezone(UTC).replace(microsecond=0)
    start = to_instant(spec.start_time, zone) if spec.start_time else None
    end = to_instant(spec.end_time, zone) if spec.end_time else None
    return Recurrence(
        trigger=_trigger(spec, zone, start=start, created=created),
        zone=zone,
        start=start or created,
        end=end,
        max_runs=spec.max_runs,
        exclude_dates=frozenset(spec.exclude.dates),
        exclude_months=frozenset(spec.exclude.months),
        jitter=spec.jitter,
        seed=seed,
    )


def _trigger(
    spec: ScheduleSpec, zone: ZoneInfo, *, start: datetime | None, created: datetime
) -> Trigger:
    if spec.cron is not None:
        return CronTrigger(spec.cron, zone)
    if spec.interval is not None:
        return IntervalTrigger(spec.interval, start or created + spec.interval)
    if spec.rrule is not None:
        # A creation time anchors on its whole minute: "BYHOUR=9;BYMINUTE=0" should fire at
        # 09:00:00, not at the second the resource happened to be created.
        anchor = start or created.replace(second=0)
        return RRuleTrigger(spec.rrule, anchor.astimezone(zone).replace(tzinfo=None), zone)
    assert spec.at is not None  # the model guarantees exactly one trigger
    return AtTrigger(to_instant(spec.at, zone))


def at_instant(spec: ScheduleSpec) -> datetime | None:
    """The instant of a one-shot `at` (a local time read in `timeZone`); None for the others."""
    return None if spec.at is None else to_instant(spec.at, ZoneInfo(spec.time_zone))


def to_instant(value: datetime, zone: ZoneInfo) -> datetime:
    """An RFC 3339 time as given; a local wall time read in `zone` (RFC 5545 rules)."""
    if value.tzinfo is not None:
        return value.astimezone(UTC)
    return resolve_local(value, zone)
