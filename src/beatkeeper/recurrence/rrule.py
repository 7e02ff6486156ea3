"""RRULE schedules: RFC 5545 recurrence rules via python-dateutil, at constant cost.

dateutil's ``rrule.after`` iterates from DTSTART on every call, so a rule that started
years ago costs milliseconds per query. This module re-anchors instead: it asks an
equivalent rule whose DTSTART sits at the start of the period (FREQ x INTERVAL, so the
INTERVAL phase is kept) that contains the wanted time, with every BYxxx default that
dateutil would derive from the real DTSTART written out explicitly. The cost of a query
is then that of one period, whatever the age of the schedule. COUNT is turned once into
the equivalent UNTIL (the COUNT-th wall time), so those rules re-anchor too.

Some rules make dateutil walk millions of empty periods (see
:mod:`beatkeeper.recurrence.budget`): a ``BYSETPOS`` that no DAILY-or-finer period can
satisfy is refused by counting, and every dateutil computation a trigger makes runs
within a step budget, so a rule costs at most about a second before it is refused. Building a
trigger also asks for the next occurrence after each month start of a year and after
1 March of the next four years, within one budget, so that a costly gap that comes round
later (a season, a leap day) is refused now instead of stalling Beat when it comes.

Wall times come from dateutil in the zone's local time; :mod:`beatkeeper.recurrence.zones`
resolves them to instants. This module must stay pure (stdlib and dateutil only).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from math import gcd
from typing import Any
from zoneinfo import ZoneInfo

from dateutil import rrule as du

from beatkeeper.recurrence import budget, rrule_syntax, zones
from beatkeeper.recurrence.trigger import RecurrenceError

_UNITS = {
    du.HOURLY: timedelta(hours=1),
    du.MINUTELY: timedelta(minutes=1),
    du.SECONDLY: zones.SECOND,
}
_PER_400_YEARS = {  # the Gregorian calendar, weekdays included, repeats every 400 years
    du.YEARLY: 400,
    du.MONTHLY: 4_800,
    du.WEEKLY: 20_871,
    du.DAILY: 146_097,
    du.HOURLY: 146_097 * 24,
    du.MINUTELY: 146_097 * 1_440,
    du.SECONDLY: 146_097 * 86_400,
}
# dateutil gives up only at year 9999; probing for "does it ever fire" just before that
# bounds the cost of a rule that never fires.
_PROBE_FROM_YEAR = 9_999 - 120
_ANCHOR_CACHE = 8
# The gap probes of one rule share this many dateutil steps.
_GAP_STEPS = 4 * budget.STEP_LIMIT
# Expanding COUNT occurrences once costs about this many steps each (SECONDLY 18, DAILY 11,
# HOURLY 9, WEEKLY 10 measured), on top of the usual budget for the gaps.
_STEPS_PER_COUNT = 20
_LONGEST_MONTHS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_TIME_PARTS = {  # the BYxxx parts that multiply each day of a period, per FREQ
    du.YEARLY: ("BYHOUR", "BYMINUTE", "BYSECOND"),
    du.MONTHLY: ("BYHOUR", "BYMINUTE", "BYSECOND"),
    du.WEEKLY: ("BYHOUR", "BYMINUTE", "BYSECOND"),
    du.DAILY: ("BYHOUR", "BYMINUTE", "BYSECOND"),
    du.HOURLY: ("BYMINUTE", "BYSECOND"),
    du.MINUTELY: ("BYSECOND",),
    du.SECONDLY: (),
}
_PERIOD_NAMES = dict(
    zip(_TIME_PARTS, ("year", "month", "week", "day", "hour", "minute", "second"), strict=True)
)
_DAY_ZERO = datetime(2000, 1, 1)  # noqa: DTZ001 - any midnight will do, to floor wall times


class RRuleTrigger:
    """Fires at every wall time an RRULE generates from ``dtstart`` (naive, in ``zone``)."""

    def __init__(self, rule: str, dtstart: datetime, zone: ZoneInfo) -> None:
        if dtstart.tzinfo is not None:
            msg = f"dtstart must be a naive wall-clock time in the zone, got {dtstart.isoformat()}"
            raise ValueError(msg)
        parts = rrule_syntax.parse(rule)
        self.rule = parts.text
        self.zone = zone
        self.dtstart = dtstart.replace(microsecond=0)
        self._parts = parts
        self._explicit = _explicit_defaults(parts, self.dtstart)
        self._anchored: dict[datetime, du.rrule] = {}
        base = _build(parts, self.dtstart)
        _check_setpos(parts)
        _check_month_days(parts)
        if not budget.within(lambda: _ever_fires(base, parts, self.dtstart), rule=parts.text):
            msg = (
                f"never fires: rrule {parts.text} has no occurrence within 100 years of "
                f"{self.dtstart:%Y-%m-%d}"
            )
            raise RecurrenceError(msg)
        self._until_instant = (
            parts.until if isinstance(parts.until, datetime) and parts.until.tzinfo else None
        )
        self._until_wall = budget.within(
            lambda: self._wall_bound(base, parts),
            rule=parts.text,
            limit=budget.STEP_LIMIT + _STEPS_PER_COUNT * (parts.count or 0),
        )
        self._rule = (
            base if self._until_wall is None else base.replace(count=None, until=self._until_wall)
        )
        before = zones.resolve_local(self.dtstart, zone) - timedelta(hours=25)
        first = budget.within(lambda: self.next_after(before), rule=parts.text)
        if first is None:
            msg = f"never fires: rrule {parts.text} ends before its first occurrence"
            raise RecurrenceError(msg)
        self.not_before = first
        self.not_after = self._last_bound()
        budget.within(lambda: self._probe_gaps(first), rule=parts.text, limit=_GAP_STEPS)

    def __repr__(self) -> str:
        return f"RRuleTrigger({self.rule!r}, {self.dtstart!r}, {self.zone!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RRuleTrigger):
            return NotImplemented
        return (self.rule, self.dtstart, self.zone) == (other.rule, other.dtstart, other.zone)

    def __hash__(self) -> int:
        return hash((self.rule, self.dtstart, self.zone))

    def describe(self) -> str:
        name = zones.zone_name(self.zone)
        return f"RRULE {self.rule}" + ("" if name == "UTC" else f" {name}")

    def next_after(self, after: datetime) -> datetime | None:
        until = self._until_instant
        if until is not None and zones.require_aware(after, "after") >= until:
            return None
        instant = zones.next_instant(after, self.zone, self.next_wall)
        if instant is not None and until is not None and instant > until:
            return None
        return instant

    def next_wall(self, start: datetime) -> datetime | None:
        """Return the first generated wall time at or after naive ``start``."""
        if self._until_wall is not None and start > self._until_wall:
            return None
        anchor = self._anchor(start)
        if anchor is None:
            return self._rule.after(start, inc=True)
        rule = self._anchored.get(anchor)
        if rule is None:
            if len(self._anchored) >= _ANCHOR_CACHE:
                self._anchored.clear()  # atomic, so threads sharing a trigger stay safe
            rule = self._rule.replace(dtstart=anchor, count=None, **self._explicit)
            self._anchored[anchor] = rule
        return rule.after(start, inc=True)

    def plain_rule(self) -> du.rrule:
        """The rule as dateutil builds it from DTSTART (for tests and benchmarks)."""
        return self._rule

    def _probe_gaps(self, first: datetime) -> None:
        """Ask for the next occurrence after each month start of a year, and after 1 March
        of the next four years, so a rule whose costly gaps come later (a season, a leap
        day) is refused now rather than stalling Beat when the gap comes round. Starts
        inside a gap already walked are skipped, so the probes walk about five years once."""
        wall = zones.wall_clock(first, self.zone)
        months = [wall.year * 12 + wall.month - 1 + k for k in range(1, 13)]
        starts = [(index // 12, index % 12 + 1) for index in months]
        starts += [(wall.year + k, 3) for k in range(1, 5)]
        reached = first
        for year, month in sorted(set(starts)):
            start = datetime(year, month, 1)  # noqa: DTZ001 - a wall time in the zone
            moment = zones.resolve_local(start, self.zone)
            if moment <= reached or year >= _PROBE_FROM_YEAR:
                continue  # inside a gap already measured: costs no more than that gap
            following = self.next_after(moment)
            if following is None:
                return
            reached = following

    def _anchor(self, wall: datetime) -> datetime | None:
        """The start of the FREQ x INTERVAL period containing ``wall``; None for the first."""
        start, freq, step = self.dtstart, self._parts.freq, self._parts.interval
        if freq == du.YEARLY:
            periods = (wall.year - start.year) // step
            anchor = datetime(start.year + periods * step, 1, 1)  # noqa: DTZ001 - wall time
        elif freq == du.MONTHLY:
            periods = ((wall.year - start.year) * 12 + wall.month - start.month) // step
            index = start.year * 12 + start.month - 1 + periods * step
            anchor = datetime(index // 12, index % 12 + 1, 1)  # noqa: DTZ001 - wall time
        elif freq in (du.WEEKLY, du.DAILY):
            days = 7 * step if freq == du.WEEKLY else step
            back = (start.weekday() - self._parts.wkst) % 7 if freq == du.WEEKLY else 0
            first = datetime.combine(start.date(), datetime.min.time()) - timedelta(days=back)
            periods = (wall - first).days // days
            anchor = first + timedelta(days=periods * days)
        else:
            unit = _UNITS[freq]
            first = start - (start - _DAY_ZERO) % unit
            periods = (wall - first) // (unit * step)
            anchor = first + unit * step * periods
        return anchor if periods > 0 else None

    def _wall_bound(self, base: du.rrule, parts: rrule_syntax.RuleParts) -> datetime | None:
        """The last wall time the rule may generate, if it is finite."""
        if parts.count is not None:
            last = None
            for last in base:  # noqa: B007 - only the COUNT-th wall time is wanted
                pass
            return last
        if parts.until is None:
            return None
        if parts.until.tzinfo is None:
            return parts.until
        # A UTC UNTIL compares instants: allow wall times up to a day later and filter
        # the resolved instants instead (a wall time in a repeated hour may qualify).
        return zones.wall_clock(parts.until, self.zone) + timedelta(days=1)

    def _last_bound(self) -> datetime | None:
        if self._until_instant is not None:
            return self._until_instant
        if self._until_wall is None:
            return None
        return zones.resolve_local(self._until_wall, self.zone) + timedelta(hours=25)


def _build(parts: rrule_syntax.RuleParts, dtstart: datetime) -> du.rrule:
    try:
        rule = du.rrulestr(parts.dateutil_text, dtstart=dtstart)
    except (ValueError, KeyError, TypeError, IndexError) as error:
        if "empty set" in str(error):  # INTERVAL steps never land on a BYxxx value
            msg = (
                f"never fires: rrule {parts.text} steps by INTERVAL={parts.interval} from "
                f"{dtstart:%H:%M:%S} and never reaches its BYHOUR/BYMINUTE/BYSECOND values"
            )
        else:
            msg = f"rrule {parts.text}: {error}"
        raise RecurrenceError(msg) from None
    assert isinstance(rule, du.rrule)
    return rule.replace(wkst=parts.wkst)


def _explicit_defaults(parts: rrule_syntax.RuleParts, dtstart: datetime) -> dict[str, Any]:
    """The BYxxx values dateutil derives from DTSTART, so a re-anchored rule keeps them."""
    names, freq = parts.names, parts.freq
    explicit: dict[str, Any] = {}
    if freq < du.SECONDLY and "BYSECOND" not in names:
        explicit["bysecond"] = dtstart.second
    if freq < du.MINUTELY and "BYMINUTE" not in names:
        explicit["byminute"] = dtstart.minute
    if freq < du.HOURLY and "BYHOUR" not in names:
        explicit["byhour"] = dtstart.hour
    if not names & {"BYWEEKNO", "BYYEARDAY", "BYMONTHDAY", "BYDAY"}:
        if freq in (du.YEARLY, du.MONTHLY):
            explicit["bymonthday"] = dtstart.day
        if freq == du.YEARLY and "BYMONTH" not in names:
            explicit["bymonth"] = dtstart.month
        if freq == du.WEEKLY:
            explicit["byweekday"] = dtstart.weekday()
    return explicit


def _values(parts: rrule_syntax.RuleParts) -> dict[str, str]:
    return dict(part.split("=", 1) for part in parts.text.split(";"))


def _check_month_days(parts: rrule_syntax.RuleParts) -> None:
    """Refuse BYMONTHDAY values that none of the BYMONTH months has (30 February).

    Filters only ever narrow a rule, so no other part can rescue it; refused by counting
    instead of by a search through every period up to year 9999.
    """
    values = _values(parts)
    if "BYMONTHDAY" not in values:
        return
    months = [int(m) for m in values.get("BYMONTH", "").split(",") if m] or range(1, 13)
    longest = max(_LONGEST_MONTHS[month - 1] for month in months)
    days = [abs(int(day)) for day in values["BYMONTHDAY"].split(",")]
    if min(days) > longest:
        msg = (
            f"never fires: rrule {parts.text}: BYMONTHDAY={values['BYMONTHDAY']} never "
            f"occurs in BYMONTH={values.get('BYMONTH', '1-12')}"
        )
        raise RecurrenceError(msg)


def _check_setpos(parts: rrule_syntax.RuleParts) -> None:
    """Refuse a BYSETPOS beyond the largest set any period of the rule can hold.

    dateutil would walk every period up to year 9999 to find that out. The bound is
    counted from the BYxxx sizes: a period holds at most (days it can hold) x (times of
    day); filters only narrow it, so a position beyond the bound never matches.
    """
    if "BYSETPOS" not in parts.names:
        return
    values = _values(parts)
    size = _most_days(parts.freq, values)
    for name in _TIME_PARTS[parts.freq]:
        # dateutil fills an absent part from DTSTART: one value.
        size *= _count(values, name) or 1
    positions = [int(p) for p in values["BYSETPOS"].split(",")]
    if all(abs(position) > size for position in positions):
        period = _PERIOD_NAMES[parts.freq]
        msg = (
            f"never fires: rrule {parts.text}: BYSETPOS={values['BYSETPOS']} asks for a "
            f"position beyond the {size} occurrence(s) one {period} can hold"
        )
        raise RecurrenceError(msg)


def _count(values: dict[str, str], name: str) -> int:
    return len(set(values[name].split(","))) if name in values else 0


def _most_days(freq: int, values: dict[str, str]) -> int:
    """An upper bound on the days one period of ``freq`` keeps after the BYxxx filters."""
    if freq >= du.DAILY:
        return 1
    months = _count(values, "BYMONTH") or (12 if freq == du.YEARLY else 1)
    bounds = [{du.WEEKLY: 7, du.MONTHLY: 31, du.YEARLY: 366}[freq]]
    if "BYMONTHDAY" in values:
        bounds.append(_count(values, "BYMONTHDAY") * months)
    if "BYYEARDAY" in values:
        bounds.append(_count(values, "BYYEARDAY"))
    if "BYWEEKNO" in values:
        bounds.append(7 * _count(values, "BYWEEKNO"))
    if "BYDAY" in values:
        days = set(values["BYDAY"].split(","))
        plain = {7: 1, 31: 5, 366: 53}[bounds[0]] * (months if freq == du.YEARLY else 1)
        bounds.append(sum(plain if day.isalpha() else months for day in days))
    return min(bounds)


def _ever_fires(rule: du.rrule, parts: rrule_syntax.RuleParts, dtstart: datetime) -> bool:
    """Whether the rule (ignoring COUNT/UNTIL) generates anything at all.

    dateutil searches for the next match until year 9999, which takes seconds for a rule
    such as ``FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30``. The calendar repeats every 400
    years, so probe a copy moved by whole 400-year cycles (and whole INTERVALs) to just
    before 9999: at most a few hundred years are searched.
    """
    per_cycle = _PER_400_YEARS[parts.freq]
    cycles = parts.interval // gcd(parts.interval, per_cycle)
    shift = (_PROBE_FROM_YEAR - dtstart.year) // (400 * cycles) * 400 * cycles
    probe_start = dtstart.replace(year=dtstart.year + max(shift, 0))
    probe = rule.replace(dtstart=probe_start, count=None, until=None)
    try:
        return probe.after(probe_start, inc=True) is not None
    except (ValueError, OverflowError):  # dateutil: "... resulting in empty rule"
        return False
