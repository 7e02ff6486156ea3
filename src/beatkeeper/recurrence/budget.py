"""A bound on the work one dateutil rrule computation may do, whatever the rule.

dateutil generates an RRULE period by period (an hour of ``FREQ=HOURLY``, a second of
``FREQ=SECONDLY``) until a period yields an occurrence or the year passes 9999. A short
rule can make it walk millions of periods that yield nothing: a ``BYSETPOS`` beyond every
period's set (``FREQ=HOURLY;BYSETPOS=2``), or a ``SECONDLY`` rule whose days are rare
(``FREQ=SECONDLY;BYHOUR=5;BYMONTH=2;BYMONTHDAY=29`` steps through every second up to
05:00 of every day it skips). Nothing is yielded meanwhile, so a caller cannot stop it
between occurrences.

:func:`bounded` runs one call with a profile function, on the calling thread only, that
counts the function calls (Python and built-in, and their returns) made during the call
and stops it past ``limit``: dateutil makes a few per period it examines. That bounds the
CPU a rule can take deterministically (the same rule is refused on every machine, however
loaded), which a wall-clock timeout could not. An ordinary query counts a few hundred
steps; ``STEP_LIMIT`` (about a third of a second of work here) leaves room for the densest
legitimate rules. A profiler already installed is put back afterwards. Pure: standard
library only.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import FrameType
from typing import Any, TypeVar

from beatkeeper.recurrence.trigger import RecurrenceError

T = TypeVar("T")

#: Calls and returns one computation may make (about 0.3 µs each here, counted).
STEP_LIMIT = 1_000_000


class TooCostlyError(RecurrenceError):
    """A rule whose occurrences cost more than the budget to compute."""


class Exhausted(BaseException):
    """Raised inside dateutil by the profiler; a BaseException so no ``except`` there eats it."""


def bounded(call: Callable[[], T], *, limit: int = STEP_LIMIT) -> tuple[T, int]:
    """Return ``call()`` and the steps it took; raise `Exhausted` past ``limit`` steps."""
    left = limit

    def count(_frame: FrameType, _event: str, _arg: Any) -> None:
        nonlocal left
        left -= 1
        if left < 0:
            raise Exhausted

    previous = sys.getprofile()
    sys.setprofile(count)
    try:
        return call(), limit - left
    finally:
        sys.setprofile(previous)


def within(call: Callable[[], T], *, rule: str, limit: int = STEP_LIMIT) -> T:
    """``call()``, or `TooCostlyError` naming ``rule`` when it needs more than ``limit`` steps."""
    try:
        result, _ = bounded(call, limit=limit)
    except Exhausted:
        msg = (
            f"rrule {rule}: too costly to evaluate (more than {limit:,} steps to find its "
            "occurrences); make it denser (fewer BYxxx filters on rare dates), or use a "
            "coarser FREQ with BYHOUR/BYMINUTE/BYSECOND"
        )
        raise TooCostlyError(msg) from None
    return result
