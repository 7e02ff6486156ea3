"""A held PostgreSQL connection that sends a statement now and reads its result later.

Why by hand. A pool process writes a run's outcome after the task body and before Celery
acknowledges the message. Waiting for PostgreSQL's answer there costs a round trip on every
run (about as much as a no-op task), yet what protects the outcome is that it has *left the
process*: once the statement is in the kernel's socket buffer, a process killed a moment later
still delivers it, and PostgreSQL commits it. So the outcome is sent before the task returns and
its answer is read when the connection is next used. psycopg's high-level API cannot do that
outside pipeline mode, and in pipeline mode statements up to a Sync share one implicit
transaction and ``Pipeline.sync()`` waits for every result. libpq's asynchronous calls
(``PQsendQueryPrepared``, ``PQgetResult``), which psycopg exposes as its documented ``pq``
layer, do exactly this on the connection psycopg opened, so SQLAlchemy's engine still builds
it (schema, time-outs, application name) and reports a refused connection as usual.

A ``HeldConnection`` belongs to one thread; it is not thread-safe. Statements are prepared
once per connection from SQLAlchemy-compiled SQL (``Statement.of``, built by ``prepared``).
Any failure raises ``DatabaseUnavailable`` and leaves the connection unusable: the caller
drops it and tries again on a fresh one (the two statements it runs fail only for reasons a
retry can outlive: a lost server, a statement timeout, a deadlock, or tables not migrated
yet, which is ``SchemaMissing``). It must not decide what to write.
"""

from __future__ import annotations

import dataclasses
import re
import select
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from psycopg import OperationalError, pq
from sqlalchemy import Connection

from beatkeeper.store.engine import (
    UNDEFINED_TABLE,
    DatabaseUnavailable,
    SchemaMissing,
    masked_url,
    schema_of,
)

__all__ = ["HeldConnection", "Statement"]

_PYFORMAT = re.compile(r"%\((\w+)\)s|%%")
_ROWS = (pq.ExecStatus.TUPLES_OK, pq.ExecStatus.COMMAND_OK)


class _FailedError(Exception):
    """Raised inside this module; reported to callers as ``DatabaseUnavailable``.

    ``answered``: the server, still connected, refused the statement (a timeout, a
    deadlock); otherwise the connection went away or stopped answering.
    """

    def __init__(self, message: str, *, answered: bool = False) -> None:
        super().__init__(message)
        self.answered = answered


@dataclass(frozen=True)
class Statement:
    """A statement as positional (``$n``) SQL with its constant values, preparable by name."""

    name: bytes
    sql: bytes
    order: tuple[str, ...]  # the parameter name behind each $n
    constants: Mapping[str, bytes | None]  # already in text form: encoded once
    #: Per $n: the constant's text, or ``_GIVEN`` for a value the caller passes (every run
    #: builds its parameter list from this, so it is worked out once).
    _slots: tuple[tuple[str, object], ...] = dataclasses.field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        slots = tuple((name, self.constants.get(name, _GIVEN)) for name in self.order)
        object.__setattr__(self, "_slots", slots)

    @classmethod
    def of(cls, name: str, sql: str, constants: Mapping[str, Any]) -> Statement:
        """From psycopg-dialect SQL (``%(name)s`` parameters), as SQLAlchemy compiles it."""
        order: list[str] = []

        def positional(match: re.Match[str]) -> str:
            if match.group(0) == "%%":
                return "%"
            if match.group(1) not in order:
                order.append(match.group(1))
            return f"${order.index(match.group(1)) + 1}"

        converted = _PYFORMAT.sub(positional, sql)
        encoded = {key: _text(value) for key, value in constants.items()}
        return cls(name.encode(), converted.encode(), tuple(order), encoded)

    def values(self, given: Mapping[str, Any]) -> list[bytes | None]:
        return [
            _text(given[name]) if constant is _GIVEN else cast("bytes | None", constant)
            for name, constant in self._slots
        ]


@dataclass(frozen=True)
class _Pending:
    statement: Statement
    tag: Any  # the caller's note for this statement, handed back with its row count


class HeldConnection:
    """One connection: ``send`` returns once the statement is on its way; ``execute`` waits."""

    def __init__(self, connection: Connection) -> None:
        """Hold ``connection`` (in autocommit) for good; ``close`` gives it back broken."""
        self._connection = connection.execution_options(isolation_level="AUTOCOMMIT")
        self._url = masked_url(connection.engine)
        self._schema = schema_of(connection.engine)
        driver = connection.connection.driver_connection
        self._pg: pq.abc.PGconn = driver.pgconn  # type: ignore[union-attr]
        self._prepared: set[bytes] = set()
        self._pending: deque[_Pending] = deque()

    @property
    def pending(self) -> int:
        return len(self._pending)

    def send(self, statement: Statement, values: Mapping[str, Any], *, tag: Any = None) -> None:
        """Send ``statement`` and return without its result; ``collect`` reads it.

        One statement at a time is in flight (libpq outside pipeline mode): collect the
        pending answer first.
        """
        if self._pending:
            raise RuntimeError("collect the pending answer before sending another statement")
        try:
            self._prepare(statement)
            self._pg.send_query_prepared(statement.name, statement.values(values))
            self._flush()
        except (_FailedError, OperationalError) as error:  # OperationalError: libpq lost the server
            raise self._unavailable(error) from None
        self._pending.append(_Pending(statement, tag))

    def collect(self, *, timeout: float | None = None) -> list[tuple[Any, int]]:
        """Read the answer to the statement in flight, if any: ``[(tag, rows)]`` or ``[]``."""
        answers = []
        while self._pending:
            try:
                rows = self._read(timeout)
            except (_FailedError, OperationalError) as error:
                raise self._unavailable(error) from None
            answers.append((self._pending.popleft().tag, rows))
        return answers

    def execute(self, statement: Statement, values: Mapping[str, Any]) -> int:
        """Send ``statement`` and wait: the rows it returned or changed."""
        self.send(statement, values)
        return self.collect()[0][1]

    def unanswered(self) -> list[Any]:
        """The tag of the statement sent but not answered (after ``DatabaseUnavailable``)."""
        tags = [pending.tag for pending in self._pending]
        self._pending.clear()
        return tags

    def close(self) -> None:
        """Give the connection back broken: the pool discards it rather than reuse it."""
        self._pending.clear()
        self._connection.invalidate()
        self._connection.close()

    def _unavailable(self, error: Exception) -> DatabaseUnavailable:
        # OperationalError: libpq lost the server. Every use of a held connection comes
        # after it connected, so a failure is never "cannot connect".
        answered = isinstance(error, _FailedError) and error.answered
        return DatabaseUnavailable(self._url, _line(error), lost=not answered, failed=answered)

    def _prepare(self, statement: Statement) -> None:
        if statement.name in self._prepared:
            return
        self._check(self._pg.prepare(statement.name, statement.sql))
        self._prepared.add(statement.name)

    def _flush(self) -> None:
        while self._pg.flush() == 1:  # the socket is full: wait until it takes more
            select.select([], [self._pg.socket], [])

    def _read(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        rows = 0
        while True:
            while self._pg.is_busy():
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                if not select.select([self._pg.socket], [], [], left)[0]:
                    raise _FailedError(f"no answer from PostgreSQL within {timeout}s")
                self._pg.consume_input()
            result = self._pg.get_result()
            if result is None:
                return rows
            rows = self._check(result)

    def _check(self, result: pq.abc.PGresult) -> int:
        if result.status not in _ROWS:
            if result.error_field(pq.DiagnosticField.SQLSTATE) == UNDEFINED_TABLE.encode():
                raise SchemaMissing(self._schema, self._url)
            message = (result.error_message or self._pg.error_message).decode(errors="replace")
            # FATAL or PANIC: the server ended the session (terminated, shutting down).
            severity = result.error_field(pq.DiagnosticField.SEVERITY_NONLOCALIZED)
            answered = severity in (b"ERROR", b"WARNING") and self._pg.status == pq.ConnStatus.OK
            if answered:  # the server's own sentence, without "LINE 2: ..." pointers
                primary = result.error_field(pq.DiagnosticField.MESSAGE_PRIMARY)
                message = primary.decode(errors="replace") if primary else message
            raise _FailedError(
                _line(message) or f"PostgreSQL answered {result.status}", answered=answered
            )
        if result.status == pq.ExecStatus.TUPLES_OK:
            return result.ntuples
        status = (result.command_status or b"").split()
        return int(status[-1]) if status and status[-1].isdigit() else 0


def _line(error: object) -> str:
    return " ".join(str(error).split())


def _text(value: Any) -> bytes | None:
    """A parameter in PostgreSQL's text format; the SQL casts it to the column's type."""
    # By exact type first (a dozen of these per run), then by base class (a StrEnum, say).
    encode = _ENCODERS.get(type(value))
    if encode is None:
        encode = next((_ENCODERS[c] for c in type(value).__mro__ if c in _ENCODERS), None)
        if encode is None:
            raise TypeError(f"cannot send {type(value).__name__} as a statement parameter")
    return encode(value)


_GIVEN = object()
_ENCODERS: dict[type, Callable[[Any], bytes | None]] = {
    type(None): lambda _: None,
    str: str.encode,
    bool: lambda value: b"true" if value else b"false",
    int: lambda value: str(value).encode(),
    uuid.UUID: lambda value: str(value).encode(),
    datetime: lambda value: value.isoformat().encode(),
}
