"""The worker's database sessions: per pool process, in its main process, and for its probe.

A pool process opens its own engine after the fork, named by a random per-process token
(``session_name``, its ``application_name``), so whether a run's owner still lives is one
look at ``pg_stat_activity``. Each of its threads holds one ``HeldConnection`` for the two
statements of every run; rarer writes take a pooled connection for one transaction.

Every way a worker reaches the database here reports an unreachable or lost database, or a
statement the server refused, as ``DatabaseUnavailable`` (``engine.translated_errors``),
the one type the worker catches. This module must not hold queries
of its own (``recording`` does) nor decide anything.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import threading
from collections.abc import Callable, Iterator

from sqlalchemy import Connection, Engine, make_url, text
from sqlalchemy.pool import NullPool

from beatkeeper.settings import Settings
from beatkeeper.store.engine import (
    SchemaMissing,
    make_engine,
    masked_url,
    schema_of,
    translated_errors,
)
from beatkeeper.store.held_connection import HeldConnection
from beatkeeper.store.prepared import Statements, statements_for

__all__ = ["PoolSessions", "main_process_transaction", "probe", "session_name"]


def session_name(token: str) -> str:
    """The ``application_name`` of a worker process's sessions (at most 63 bytes)."""
    return f"beatkeeper-worker {token}"


class PoolSessions:
    """One pool process's engine, its threads' held connections and the prepared statements."""

    def __init__(self, settings: Settings, *, token: str, threads: int) -> None:
        self.engine = make_engine(
            settings,
            application_name=session_name(token),
            pool_size=threads + 1,  # one held per thread, one for the rarer steps
            max_overflow=threads,
        )
        self.statements: Statements = statements_for(self.engine.dialect)
        self._thread = threading.local()
        self._lock = threading.Lock()
        self._all: list[HeldConnection] = []

    def held(self) -> HeldConnection | None:
        """This thread's held connection, if it has one open."""
        held: HeldConnection | None = getattr(self._thread, "held", None)
        return held

    def hold(self) -> HeldConnection:
        """This thread's held connection (no pool checkout, no ping per run)."""
        held = self.held()
        if held is None:
            with translated_errors(self.engine):
                held = HeldConnection(self.engine.connect())
            self._thread.held = held
            with self._lock:
                self._all.append(held)
        return held

    def every_held(self) -> list[HeldConnection]:
        with self._lock:
            return list(self._all)

    def discard(self, held: HeldConnection | None = None) -> None:
        """Close ``held`` (default: this thread's) after an error, whichever thread held it;
        the next step opens a fresh one."""
        held = held or self.held()
        if held is None:
            return
        if self.held() is held:
            self._thread.held = None
        with self._lock:
            if held in self._all:
                self._all.remove(held)
        with contextlib.suppress(Exception):  # it is broken already; drop it whatever
            held.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One transaction on a pooled connection, committed when the block ends."""
        with translated_errors(self.engine), self.engine.begin() as db:
            yield db


@functools.cache
def _main_engine() -> Engine:
    return make_engine(
        Settings.from_env(), application_name="beatkeeper-worker-main", poolclass=NullPool
    )


@contextlib.contextmanager
def main_process_transaction() -> Iterator[Connection]:
    """One transaction from a worker's main process: a short-lived connection, none kept
    open across the pool's fork."""
    engine = _main_engine()
    with translated_errors(engine), engine.begin() as db:
        yield db


def probe(settings: Settings, *, connect_timeout: int) -> Callable[[], None]:
    """A check that raises unless the database answers now, connecting within the timeout,
    and ``SchemaMissing`` when it answers that the runs table is not there."""
    # A probe has a second or so: fail fast rather than wait out the usual connect timeout.
    url = make_url(settings.require_database_url()).update_query_dict(
        {"connect_timeout": str(connect_timeout)}
    )
    quick = dataclasses.replace(settings, database_url=url.render_as_string(hide_password=False))
    engine = make_engine(quick, application_name="beatkeeper-worker-probe", poolclass=NullPool)

    def check() -> None:
        with engine.connect() as db:
            if db.execute(text("SELECT to_regclass('runs') IS NULL")).scalar_one():
                raise SchemaMissing(schema_of(engine), masked_url(engine))

    return check
