"""The parsed spec and recurrence of each schedule Beat plans, kept from tick to tick.

A schedule's spec is stored as JSON; turning it into a ``Recurrence`` costs microseconds
for a cron and up to a second for an RRULE with a large COUNT (its COUNT is expanded once
to find the last occurrence). Beat reads every due schedule on every tick it is due, so
without this it paid that cost each time: ``FREQ=SECONDLY;COUNT=100000`` took a quarter of
a core. Entries are keyed by schedule id and spec hash (an edit changes the hash, so it is
read again) and the least recently used are dropped past ``SIZE``. Used by one thread.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict

from beatkeeper.plans import DueSchedule
from beatkeeper.recurrence import Recurrence
from beatkeeper.spec import ScheduleSpec, recurrence_of

__all__ = ["SIZE", "Specs"]

SIZE = 10_000  # schedules kept; a few kB each

Read = tuple[ScheduleSpec, Recurrence]


class Specs:
    """Each due schedule's spec and recurrence, read once per spec version."""

    def __init__(self, size: int = SIZE) -> None:
        self._size = size
        self._kept: OrderedDict[tuple[uuid.UUID, str], Read] = OrderedDict()

    def read(self, due: DueSchedule) -> Read:
        """The spec and recurrence of ``due``; ``ValueError`` if its spec cannot be read."""
        key = (due.id, due.spec_hash)
        kept = self._kept.get(key)
        if kept is not None:
            self._kept.move_to_end(key)
            return kept
        spec = ScheduleSpec.model_validate_json(due.spec_json)
        kept = spec, recurrence_of(spec, seed=str(due.id), created_at=due.created_at)
        self._kept[key] = kept
        if len(self._kept) > self._size:
            self._kept.popitem(last=False)
        return kept
