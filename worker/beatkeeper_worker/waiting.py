"""How long Beat waits after a failed tick: exponential backoff, one log line per failure.

(Between good ticks Beat waits on the store's ``notifications.Listener`` instead: until
the next due instant or a change, whichever comes first.)

This module only counts: it sleeps, reads and publishes nothing.
"""

from __future__ import annotations

import logging

__all__ = ["Backoff"]

log = logging.getLogger(__name__)


class Backoff:
    """Exponential backoff with one log line per failed attempt, and one on recovery."""

    def __init__(self, first: float = 0.5, longest: float = 30.0) -> None:
        self._first = first
        self.longest = longest
        self.failures = 0

    def failed(self, problem: str) -> float:
        delay = min(self.longest, self._first * 2.0**self.failures)
        self.failures += 1
        log.warning("beat: %s; retrying in %.1fs", problem, delay)
        return delay

    def succeeded(self) -> None:
        if self.failures:
            log.warning("beat: working again after %d failed attempts", self.failures)
        self.failures = 0
