"""How long a failed run waits before its next attempt: exponential backoff, full jitter.

A Schedule's ``retry.backoff`` gives ``initial``, ``max`` and ``multiplier``. After failed
attempt *n* (1 for the first) the next attempt waits a uniformly random time between zero
and ``min(max, initial * multiplier ** (n - 1))`` ("full jitter", as in the AWS
Architecture Blog's *Exponential Backoff And Jitter*): the ceiling grows exponentially, and
the randomness spreads the retries of many runs that failed together (a database outage)
instead of sending them back in one wave.

Pure: no clock, no I/O. The caller adds the delay to *now* and stores the result as the
run's ``due_at``; the wait then happens in PostgreSQL, never as a Celery countdown.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import timedelta

from beatkeeper.spec.model import Backoff

__all__ = ["backoff_ceiling", "next_delay"]


def backoff_ceiling(backoff: Backoff, failed_attempt: int) -> timedelta:
    """The longest wait after attempt ``failed_attempt`` (1-based) failed."""
    if failed_attempt < 1:
        raise ValueError(f"attempts count from 1, got {failed_attempt}")
    cap = backoff.max.total_seconds()
    # Compare in float seconds: multiplier ** 99 overflows timedelta, not float.
    grown = backoff.initial.total_seconds() * backoff.multiplier ** (failed_attempt - 1)
    return timedelta(seconds=min(cap, grown))


def next_delay(
    backoff: Backoff, failed_attempt: int, *, uniform: Callable[[], float] = random.random
) -> timedelta:
    """A random wait in ``[0, backoff_ceiling]``; ``uniform`` returns a float in [0, 1)."""
    return backoff_ceiling(backoff, failed_attempt) * uniform()
