"""Connections a long-running loop holds across its turns, and what their errors mean.

Beat plans on one connection, publishes on another (its batch is marked ``enqueued`` on a
helper thread while the next batch is planned) and asks when to wake on a third, each
checked out once and held across ticks: no pool checkout or pre-ping per transaction.
``HeldConnections`` gives them out by role and drops them all after an error; the next use
reconnects.

Their errors are the engine's (``DatabaseUnavailable`` for a server that cannot be reached,
went away or gave up on a statement; ``SchemaMissing`` for a schema without beatkeeper's
tables); callers wrap their use in ``engine.translated_errors`` (re-exported here) for what
the driver raises past the engine, so they need no SQLAlchemy.

This module holds connections; the queries are in ``planning`` and ``publishing``.
"""

from __future__ import annotations

import contextlib
from typing import Literal

from psycopg.types.array import ListBinaryDumper
from sqlalchemy import Connection, Engine

from beatkeeper.store.engine import SchemaMissing, translated_errors

# Connection and Engine are exported as the handles callers pass along to store operations.
__all__ = [
    "Connection",
    "Engine",
    "HeldConnections",
    "Role",
    "SchemaMissing",
    "translated_errors",
]

Role = Literal["plan", "publish", "watch"]
"""``watch`` is in autocommit, for single reads that need no transaction: each read is one
round trip instead of three (``BEGIN``, the read, ``COMMIT``), which counts when a tick is a
few milliseconds and every round trip waits for a busy host to schedule the server."""


class HeldConnections:
    """One connection per role, held until ``close`` (after an error, or at shutdown).

    The publishing connection commits asynchronously: losing its last commits in a
    PostgreSQL crash only sends a run again under the same id, which workers drop
    (invariant 3), while planning commits are durable before anything is published.

    Lists go to PostgreSQL as binary arrays: psycopg dumps a list as text by default,
    element by element (about 8 µs a timestamp, 2 µs a UUID here), which was a quarter of
    recording a planned batch at 100k schedules; binary costs 0.2-0.6 µs an element.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._held: dict[Role, Connection] = {}

    def get(self, role: Role) -> Connection:
        connection = self._held.get(role)
        if connection is None or connection.closed:
            connection = self._engine.connect()
            raw = connection.connection.driver_connection
            raw.adapters.register_dumper(list, ListBinaryDumper)  # type: ignore[union-attr]
            if role == "publish":
                connection.exec_driver_sql("SET synchronous_commit = off")
                connection.commit()
            elif role == "watch":
                connection = connection.execution_options(isolation_level="AUTOCOMMIT")
            self._held[role] = connection
        return connection

    def close(self) -> None:
        held, self._held = self._held, {}
        for connection in held.values():
            with contextlib.suppress(Exception):  # it may be the broken one
                connection.invalidate()
                connection.close()
