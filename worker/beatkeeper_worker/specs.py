"""The parsed spec and recurrence of each schedule Beat plans, kept from tick to tick.

Beat reads every due schedule on every tick it is due; building its recurrence again each
time made a due tick cost what the rule costs to build (an RRULE with COUNT=100000 expands
its COUNT: a second). ``Specs`` keeps them per schedule id and spec hash
(``beatkeeper.spec.recurrences``), so a due tick costs the same whatever the rule.

Only what took ``KEEP_FROM_SECONDS`` or more to build is kept, and only an RRULE can (the
rest are not even timed). A cron, interval or short RRULE is read again in about 50 µs;
kept, 100k interval schedules due in turn churned a 10,000-entry cache that never hit (each
schedule comes back after 100k others), and the entries' passage through the garbage
collector's oldest generation made full collections of several hundred milliseconds: the
tail of Beat's lag.
"""

from __future__ import annotations

from beatkeeper.decisions.planning import DueSchedule
from beatkeeper.spec import ScheduleSpec
from beatkeeper.spec.recurrences import Read, Recurrences

__all__ = ["KEEP_FROM_SECONDS", "Specs"]

KEEP_FROM_SECONDS = 0.002


class Specs:
    """Each due schedule's spec and recurrence, read once per spec version."""

    def __init__(self, size: int = 10_000) -> None:
        self._recurrences = Recurrences(size, keep_from=KEEP_FROM_SECONDS)

    def read(self, due: DueSchedule) -> Read:
        """The spec and recurrence of ``due``; ``ValueError`` if its spec cannot be read."""
        return self._recurrences.of(
            due.id,
            due.spec_hash,
            lambda: ScheduleSpec.model_validate_json(due.spec_json),
            created_at=due.created_at,
        )
