"""How Beat waits: for the next due instant or a schema change, and after an outage.

``Waiter`` sleeps between ticks until a deadline or a ``NOTIFY`` on the schema's channel
(sent when a schedule changes), whichever comes first; Beat never polls on a fixed period.
``Backoff`` says how long to wait after a failed tick, with one log line per failure.

This module only waits: it reads no schedule and plans or publishes nothing.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import psycopg
from sqlalchemy import Engine

__all__ = ["Backoff", "Waiter"]

log = logging.getLogger(__name__)


class Waiter:
    """Sleeps until a deadline or a NOTIFY on the schema's channel, whichever comes first.

    A dedicated autocommit connection holds the ``LISTEN``. While it cannot connect, waits
    are plain sleeps capped at a second, so a schedule change is at worst that late.
    """

    def __init__(self, engine: Engine, channel: str) -> None:
        self._conninfo = engine.url.set(drivername="postgresql").render_as_string(
            hide_password=False
        )
        self._channel = channel
        self._connection: psycopg.Connection[Any] | None = None
        self._retry_at = 0.0

    def wait(self, seconds: float) -> None:
        if seconds <= 0:
            return
        connection = self._listening()
        if connection is None:
            time.sleep(min(seconds, 1.0))
            return
        try:
            for _ in connection.notifies(timeout=seconds, stop_after=1):
                pass
            for _ in connection.notifies(timeout=0):  # a burst of changes wakes us once
                pass
        except psycopg.Error:
            self.close()

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None and not connection.closed:
            connection.close()

    def _listening(self) -> psycopg.Connection[Any] | None:
        if self._connection is not None and not self._connection.closed:
            return self._connection
        if time.monotonic() < self._retry_at:
            return None
        try:
            connection = psycopg.connect(
                self._conninfo,
                autocommit=True,
                connect_timeout=5,
                application_name="beatkeeper-beat-listen",
            )
            connection.execute(f'LISTEN "{self._channel}"')
        except psycopg.Error:
            self._retry_at = time.monotonic() + 2.0
            return None
        self._connection = connection
        return connection


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
