"""The recurrences of stored specs, kept per spec version for the components that poll them.

Turning a stored spec into a ``Recurrence`` costs microseconds for a cron and up to about a
second for an RRULE with a large COUNT (the COUNT is expanded once to find the last
occurrence). Beat reads every due schedule on each tick it is due, and the operator's
status refresher every schedule whose row changed: without a cache each would pay that
cost again and again for the same spec (``FREQ=SECONDLY;COUNT=100000`` took a quarter of
Beat's core). Entries are keyed by schedule id and spec hash, so an edit (a new hash) is
read afresh; the least recently used are dropped past ``size``. ``keep_from`` keeps only
what took at least that long to build: when more schedules come due in turn than the cache
holds (Beat at 100k schedules), an LRU never hits, and every entry kept only to be dropped
again moved through the garbage collector's oldest generation. Safe to share between
threads. Pure: no I/O.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime

from beatkeeper.recurrence import Recurrence
from beatkeeper.spec.model import ScheduleSpec
from beatkeeper.spec.timing import recurrence_of

__all__ = ["Recurrences"]

Read = tuple[ScheduleSpec, Recurrence]


class Recurrences:
    """Each schedule's spec and recurrence, built once per spec version."""

    def __init__(self, size: int = 10_000, *, keep_from: float = 0.0) -> None:
        """``keep_from``: CPU seconds; what was built quicker is built again when asked again."""
        self._size = size
        self._keep_from = keep_from
        self._kept: OrderedDict[tuple[uuid.UUID, str], Read] = OrderedDict()
        self._lock = threading.Lock()

    def of(
        self,
        schedule_id: uuid.UUID,
        spec_hash: str,
        spec: Callable[[], ScheduleSpec],
        *,
        created_at: datetime,
    ) -> Read:
        """The spec (parsed by ``spec()`` on a miss) and its recurrence; errors propagate."""
        key = (schedule_id, spec_hash)
        with self._lock:
            kept = self._kept.get(key)
            if kept is not None:
                self._kept.move_to_end(key)
                return kept
        parsed = spec()
        # Only an RRULE can be slow to build (its COUNT is expanded); a cron, interval or
        # one-shot takes microseconds, about what timing it costs (a system call each).
        quick = bool(self._keep_from) and parsed.rrule is None
        started = 0.0 if quick else time.thread_time()  # CPU time: preemption is no cost
        kept = parsed, recurrence_of(parsed, seed=str(schedule_id), created_at=created_at)
        if quick or time.thread_time() - started < self._keep_from:
            return kept
        with self._lock:
            self._kept[key] = kept
            while len(self._kept) > self._size:
                self._kept.popitem(last=False)
        return kept
