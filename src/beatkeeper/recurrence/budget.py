"""A bound on the work one dateutil rrule computation may do, whatever the rule.

dateutil generates an RRULE period by period (an hour of ``FREQ=HOURLY``, a second of
``FREQ=SECONDLY``) until a period yields an occurrence or the year passes 9999. A short
rule can make it walk millions of periods that yield nothing: a ``BYSETPOS`` beyond every
period's set (``FREQ=HOURLY;BYSETPOS=2``), or a ``SECONDLY`` rule whose days are rare
(``FREQ=SECONDLY;BYHOUR=5;BYMONTH=2;BYMONTHDAY=29`` steps through every second up to
05:00 of every day it skips). Nothing is yielded meanwhile, so a caller cannot stop it
between occurrences.

:func:`bounded` runs one call with a trace function, on the calling thread only, that
counts the lines dateutil's rrule module executes and stops the call past ``limit``.
That bounds the CPU a rule can take deterministically (the same rule is refused on every
machine, however loaded), which a wall-clock timeout could not. The count is a few
hundred lines for an ordinary query; ``STEP_LIMIT`` (about a quarter of a second of work here)
leaves room for the densest legitimate rules. A tracer already installed (a debugger,
coverage) is put back afterwards. Pure: standard library and dateutil only.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import FrameType
from typing import Any, TypeVar

from dateutil import rrule as du

from beatkeeper.recurrence.trigger import RecurrenceError

T = TypeVar("T")

#: Lines of dateutil's rrule module one computation may execute (0.2-0.3 µs each here).
STEP_LIMIT = 1_000_000
_DATEUTIL_RRULE = du.__file__


class TooCostlyError(RecurrenceError):
    """A rule whose occurrences cost more than the budget to compute."""


class Exhausted(BaseException):
    """Raised inside dateutil by the tracer; a BaseException so no ``except`` there eats it."""


def bounded(call: Callable[[], T], *, limit: int = STEP_LIMIT) -> tuple[T, int]:
    """Return ``call()`` and the steps it took; raise `Exhausted` past ``limit`` steps."""
    left = limit

    def count(_frame: FrameType, event: str, _arg: Any) -> Any:
        nonlocal left
        if event == "line":
            left -= 1
            if left < 0:
                raise Exhausted
        return count

    def enter(frame: FrameType, _event: str, _arg: Any) -> Any:
        return count if frame.f_code.co_filename == _DATEUTIL_RRULE else None

    previous = sys.gettrace()
    sys.settrace(enter)
    try:
        return call(), limit - left
    finally:
        sys.settrace(previous)


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
