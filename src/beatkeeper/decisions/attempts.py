"""What a failed attempt becomes: another attempt later, a dead run, or a run that stays failed.

``after_failure`` is the pure half of recording a failure: given the attempt that failed, the
schedule's ``retry`` and the failures it had in a row, it says whether the run is retried
(and when: a full-jitter backoff from ``beatkeeper.retry``, so the next attempt waits in
PostgreSQL, never as a Celery countdown), dead-lettered after its last attempt, or left
``failed`` (no retries), and whether that final failure pauses the schedule
(``pauseAfterFailures``). ``worker_lost`` is the failure of a run whose body killed every
process that ran it.

Pure: no SQL, no Celery, no I/O and no clock (callers pass ``now`` and the random source).
Recording the answer is the worker's business, through ``beatkeeper.store.recording``.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from beatkeeper.retry import next_delay
from beatkeeper.spec.model import Backoff
from beatkeeper.states import RunState

__all__ = ["AfterFailure", "FailedAttempt", "after_failure", "pause_reason", "worker_lost"]


@dataclass(frozen=True)
class FailedAttempt:
    """A run just moved to ``failed``, with what its schedule says about failures."""

    attempt: int  # the attempt that failed, from 1
    max_attempts: int
    backoff: Backoff
    pause_after: int | None  # the schedule's pauseAfterFailures


@dataclass(frozen=True)
class AfterFailure:
    """Where a failed attempt leaves its run."""

    state: Literal[RunState.RETRYING, RunState.DEAD, RunState.FAILED]
    due_at: datetime | None = None  # the next attempt, when retrying

    @property
    def final(self) -> bool:
        """Whether the run ends here: it counts towards ``pauseAfterFailures``."""
        return self.state is not RunState.RETRYING


def after_failure(
    failed: FailedAttempt, *, now: datetime, uniform: Callable[[], float] = random.random
) -> AfterFailure:
    """Retry while attempts are left; then ``dead`` with retries configured, else ``failed``."""
    if failed.attempt < failed.max_attempts:
        due = now + next_delay(failed.backoff, failed.attempt, uniform=uniform)
        return AfterFailure(RunState.RETRYING, due_at=due)
    if failed.max_attempts > 1:
        return AfterFailure(RunState.DEAD)
    return AfterFailure(RunState.FAILED)


def pause_reason(failures_in_a_row: int, pause_after: int | None) -> str | None:
    """Why the schedule is suspended after its ``failures_in_a_row``-th final failure, if it is."""
    if pause_after is None or failures_in_a_row < pause_after:
        return None
    return (
        f"paused after {failures_in_a_row} consecutive failed runs "
        f"(pauseAfterFailures: {pause_after})"
    )


def worker_lost(losses: int, last_owner: str) -> str:
    """The error of a run failed unrun because its body killed ``losses`` processes."""
    return (
        f"WorkerLost: {losses} worker processes died running this run (the last: {last_owner}); "
        "not run again"
    )
