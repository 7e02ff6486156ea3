"""LISTEN/NOTIFY on a schema's channel: what wakes Beat before its next due instant.

``notify`` is sent in the transaction of every change Beat must see at once (a schedule
applied or deleted, a run planned by hand, a retry), and reaches listeners when it commits;
the ``count_runs`` trigger sends the same when a run of a ``Queue`` schedule finishes.
``Listener`` waits on that channel until a deadline or a notification, whichever comes
first, so Beat never polls on a fixed period.

This module only signals and waits: it reads no schedule and decides nothing.
"""

from __future__ import annotations

import time
from typing import Any

import psycopg
from sqlalchemy import Connection, Engine, text

from beatkeeper.store.models import NOTIFY_PREFIX

__all__ = ["Listener", "channel_for", "notify"]

#: While the listening connection cannot be made, waits are sleeps of at most this long.
UNLISTENED_WAIT_SECONDS = 1.0
RECONNECT_AFTER_SECONDS = 2.0


def channel_for(schema: str) -> str:
    """The LISTEN/NOTIFY channel of a schema (PostgreSQL cuts identifiers at 63 bytes)."""
    return (NOTIFY_PREFIX + schema)[:63]


_NOTIFY = text("SELECT pg_notify(left(:prefix || current_schema(), 63), :payload)")


def notify(db: Connection, payload: str = "") -> None:
    """Wake every Beat of this schema once the caller's transaction commits."""
    db.execute(_NOTIFY, {"prefix": NOTIFY_PREFIX, "payload": payload})


class Listener:
    """Sleeps until a deadline or a NOTIFY on one channel, whichever comes first.

    A dedicated autocommit connection (plain psycopg: SQLAlchemy has no notification API)
    holds the ``LISTEN``. While it cannot connect, waits are plain sleeps of at most
    ``UNLISTENED_WAIT_SECONDS``, so a change is at worst that late; a lost connection is
    made again on a later wait. Waiting never raises for the database.
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
            time.sleep(min(seconds, UNLISTENED_WAIT_SECONDS))
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
            self._retry_at = time.monotonic() + RECONNECT_AFTER_SECONDS
            return None
        self._connection = connection
        return connection
