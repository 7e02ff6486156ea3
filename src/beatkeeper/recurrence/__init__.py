"""The recurrence engine: when does a Schedule fire next?

Turns a Schedule's ``cron`` / ``rrule`` / ``interval`` / ``at`` plus its ``timeZone`` and
bounds into exact instants. Everything here is pure — standard library and
python-dateutil only, no clock reads, no I/O, no imports from the spec, the store or
Celery (an import-linter contract enforces it) — so the operator, the Beat scheduler
and ``beatkeeper validate`` all compute the same occurrences.

Cost matters: the scheduler asks for the next occurrence of every due schedule on every
tick, so each query costs microseconds whatever the age of the schedule. That is why cron
is hand-written (croniter is ~10x slower per call) and why RRULEs are re-anchored near the
query instead of being iterated from DTSTART as dateutil does.

Public API::

    RecurrenceError   a user's recurrence cannot be used (ValueError; plain-English str)
    Trigger           the protocol: next_after(after) -> datetime | None, describe() -> str
    CronTrigger, RRuleTrigger, IntervalTrigger, AtTrigger
    Recurrence        a trigger within start/end/maxRuns/exclusions, with jitter
    resolve_local     a naive wall time in a zone -> aware UTC instant (RFC 5545 rules)
"""

from beatkeeper.recurrence.bounded import Recurrence
from beatkeeper.recurrence.cron import CronTrigger
from beatkeeper.recurrence.rrule import RRuleTrigger
from beatkeeper.recurrence.simple import AtTrigger, IntervalTrigger
from beatkeeper.recurrence.trigger import RecurrenceError, Trigger
from beatkeeper.recurrence.zones import resolve_local

__all__ = [
    "AtTrigger",
    "CronTrigger",
    "IntervalTrigger",
    "RRuleTrigger",
    "Recurrence",
    "RecurrenceError",
    "Trigger",
    "resolve_local",
]
