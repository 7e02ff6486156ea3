"""The parsed spec and recurrence of each schedule Beat plans, kept from tick to tick.

Beat reads every due schedule on every tick it is due; building its recurrence again each
time made a due tick cost what the rule costs to build (an RRULE with COUNT=100000 expands
its COUNT: a second). ``Specs`` keeps them per schedule id and spec hash
(``beatkeeper.spec.recurrences``), so a due tick costs the same whatever the rule.
"""

from __future__ import annotations

from beatkeeper.decisions.planning import DueSchedule
from beatkeeper.spec import ScheduleSpec
from beatkeeper.spec.recurrences import Read, Recurrences

__all__ = ["Specs"]


class Specs:
    """Each due schedule's spec and recurrence, read once per spec version."""

    def __init__(self, size: int = 10_000) -> None:
        self._recurrences = Recurrences(size)

    def read(self, due: DueSchedule) -> Read:
        """The spec and recurrence of ``due``; ``ValueError`` if its spec cannot be read."""
        return self._recurrences.of(
            due.id,
            due.spec_hash,
            lambda: ScheduleSpec.model_validate_json(due.spec_json),
            created_at=due.created_at,
        )
