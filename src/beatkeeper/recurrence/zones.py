"""Wall-clock time in an IANA zone, resolved the way RFC 5545 §3.3.5 asks.

Cron and RRULE produce *wall-clock* times; the scheduler needs *instants*. This module
is the one place that turns one into the other, so every trigger agrees on three rules:

* a wall time inside a spring-forward gap takes the offset from before the gap
  (02:30 in a 02:00→03:00 gap is planned at 03:30);
* an ambiguous wall time (fall back) is its first occurrence;
* the same instant is never returned twice, and results strictly increase.

``zoneinfo`` with ``fold=0`` resolves exactly that way. What ``fold=0`` does not give
for free is an efficient *search*: around a transition the wall → instant map is not
monotonic (a gap wall time lands on the same instant as the wall time one gap-length
later), and the repeated hour of a fall-back must be jumped over, not walked second by
second. :func:`next_instant` does that once for every trigger that generates wall
times in order.

This module must stay pure (stdlib only) and must not know about cron or RRULE syntax.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, tzinfo

SECOND = timedelta(seconds=1)
MICROSECOND = timedelta(microseconds=1)

# The largest UTC-offset jump in tzdata is a day (Pacific/Apia skipped 2011-12-30);
# an hour of slack keeps the look-back safe.
_MAX_JUMP = timedelta(hours=25)

NextWall = Callable[[datetime], datetime | None]
"""Given a naive wall time, return the first matching wall time at or after it (or None)."""


def resolve_local(wall: datetime, zone: tzinfo) -> datetime:
    """Return the instant (aware, UTC) of a naive wall-clock time in ``zone``.

    A time in a gap takes the offset from before the gap; an ambiguous time is its
    first occurrence (RFC 5545 §3.3.5; exactly ``zoneinfo`` with ``fold=0``).
    """
    if wall.tzinfo is not None:
        msg = f"resolve_local expects a naive wall-clock time, got {wall.isoformat()}"
        raise ValueError(msg)
    return wall.replace(tzinfo=zone, fold=0).astimezone(UTC)


def wall_clock(instant: datetime, zone: tzinfo) -> datetime:
    """Return the naive wall-clock time that ``zone`` shows at an aware ``instant``."""
    return instant.astimezone(zone).replace(tzinfo=None, fold=0)


def require_aware(moment: datetime, name: str) -> datetime:
    """Return ``moment`` in UTC; a naive datetime here is a programming error."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        msg = f"{name} must be timezone-aware, got {moment.isoformat()}"
        raise ValueError(msg)
    return moment.astimezone(UTC)


def next_instant(after: datetime, zone: tzinfo, next_wall: NextWall) -> datetime | None:
    """Return the first instant strictly after ``after`` among the resolved wall times.

    ``next_wall`` enumerates matching wall times in wall-clock order. The occurrences
    are the set ``{resolve_local(w) for every matching w}``; this returns its smallest
    member greater than ``after`` while asking ``next_wall`` only a handful of times,
    whatever lies in gaps and repeated hours.
    """
    x = after if after.tzinfo is UTC else require_aware(after, "after")
    quiet = _quiet_span(x, zone)
    if quiet is not None:
        # Fast path, the usual case: no offset change within a day before ``x`` and
        # none before the result, so wall time and instant differ by one constant.
        offset, until = quiet
        wall = next_wall((x.replace(tzinfo=None) + offset).replace(microsecond=0) + SECOND)
        if wall is None:
            return None
        instant = (wall - offset).replace(tzinfo=UTC)
        if instant < until:
            return instant
    start, gap_from = _search_start(x, zone)
    best: datetime | None = None
    if gap_from is not None:
        # ``after`` is just past a spring-forward gap: gap wall times before ``start``
        # resolve to instants after ``after``.
        wall = next_wall(gap_from)
        if (
            wall is not None
            and wall < start
            and wall_clock(resolve_local(wall, zone), zone) != wall
        ):
            best = resolve_local(wall, zone)
    wall = next_wall(start)
    while wall is not None:
        instant = resolve_local(wall, zone)
        if wall_clock(instant, zone) == wall:
            # A real wall time: every later real wall time resolves later still, and
            # later gap wall times resolve after this one, so nothing beats it but `best`.
            if instant > x:
                return instant if best is None or instant < best else best
            wall = next_wall(wall + SECOND)  # not reached: `start` is past such times
            continue
        # A gap wall time: real wall times up to one gap length later may resolve
        # earlier, so remember this one and continue at the end of the gap.
        if instant > x and (best is None or instant < best):
            best = instant
        wall = next_wall(_gap_end(wall, instant, zone))
    return best


# Per zone, a few spans of UTC time [known_from, until) with one offset throughout, and
# the instant a day after the offset change that opens the span (``quiet_from``): from
# there on no earlier change can matter. Shared by every trigger in the zone; found by
# probing, because zoneinfo has no public list of transitions.
_Span = tuple[datetime, datetime, datetime, timedelta]
_SPANS: dict[tzinfo, list[_Span]] = {}
_SPANS_PER_ZONE = 16
_PROBE_STEP = timedelta(days=1)  # since 1970 no two offset changes are less than a week apart
_PROBE_STEPS = 400


def _quiet_span(x: datetime, zone: tzinfo) -> tuple[timedelta, datetime] | None:
    """Return (offset, until) if no offset change lies within a day before ``x``.

    ``until`` is the next offset change after ``x``; None means "use the slow path".
    """
    spans = _SPANS.get(zone, [])
    for known_from, quiet_from, until, offset in spans:
        if known_from <= x < until:
            return (offset, until) if quiet_from <= x else None
    span = _measure_span(x, zone)
    _SPANS[zone] = [*spans[-(_SPANS_PER_ZONE - 1) :], span]
    return (span[3], span[2]) if span[1] <= x else None


def _measure_span(x: datetime, zone: tzinfo) -> _Span:
    offset = x.astimezone(zone).utcoffset()
    assert offset is not None
    until = x + _PROBE_STEP * _PROBE_STEPS
    probe = x
    for _ in range(_PROBE_STEPS):
        probe += _PROBE_STEP
        if probe.astimezone(zone).utcoffset() != offset:
            until = _transition(probe - _PROBE_STEP, probe, zone)
            break
    known_from = x - _PROBE_STEP * _PROBE_STEPS
    quiet_from = known_from + _MAX_JUMP
    probe = x
    for _ in range(_PROBE_STEPS):
        probe -= _PROBE_STEP
        if probe.astimezone(zone).utcoffset() != offset:
            known_from = _transition(probe, probe + _PROBE_STEP, zone)
            quiet_from = known_from + _MAX_JUMP
            break
    return known_from, quiet_from, until, offset


def _search_start(x: datetime, zone: tzinfo) -> tuple[datetime, datetime | None]:
    """Return the earliest real wall time that resolves after ``x`` (inclusive).

    Also return, when ``x`` lies within one gap length after a spring-forward, the
    earliest gap wall time that resolves after ``x`` (else None).
    """
    local = x.astimezone(zone)
    wall = local.replace(tzinfo=None, fold=0)
    offset = local.utcoffset()
    assert offset is not None
    if local.fold:
        # Second pass through a repeated hour: its wall times resolve (fold=0) to the
        # first pass, before ``x``; jump to the first wall time after the repetition.
        first_offset = wall.replace(tzinfo=zone).utcoffset()
        assert first_offset is not None
        change = _transition(x - (first_offset - offset), x, zone)
        return change.replace(tzinfo=None) + first_offset, None
    start = wall.replace(microsecond=0) + SECOND
    earlier = (x - _MAX_JUMP).astimezone(zone).utcoffset()
    assert earlier is not None
    if earlier < offset:
        jump = offset - earlier
        if (x - jump).astimezone(zone).utcoffset() != offset:
            gap_from = (x.replace(tzinfo=None) + earlier).replace(microsecond=0) + SECOND
            return start, gap_from
    return start, None


def _gap_end(wall: datetime, instant: datetime, zone: tzinfo) -> datetime:
    """Return the first real wall time after the gap that contains ``wall``."""
    before = wall.replace(tzinfo=zone, fold=0).utcoffset()
    after = instant.astimezone(zone).utcoffset()
    assert before is not None
    assert after is not None
    change = _transition(instant - (after - before), instant, zone)
    return change.replace(tzinfo=None) + after


def _transition(low: datetime, high: datetime, zone: tzinfo) -> datetime:
    """Return the first whole-second instant in (low, high] with ``high``'s UTC offset.

    The caller knows exactly one offset change happens in that window. zoneinfo has no
    public list of transitions, so bisect (at most ~17 steps for a one-day window).
    """
    base = low.replace(microsecond=0)
    target = high.astimezone(zone).utcoffset()
    lo, hi = 0, int((high - base).total_seconds()) + 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if (base + timedelta(seconds=mid)).astimezone(zone).utcoffset() == target:
            hi = mid
        else:
            lo = mid
    return base + timedelta(seconds=hi)


def zone_name(zone: tzinfo) -> str:
    """Return the IANA name of ``zone`` for messages and summaries."""
    key = getattr(zone, "key", None)
    return key if isinstance(key, str) else str(zone)
