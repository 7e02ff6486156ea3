"""The one place that builds a SQLAlchemy engine for beatkeeper's database.

Every component (operator, Beat, workers, CLI, tests) gets its engine from ``make_engine``,
so they all talk to PostgreSQL the same way: psycopg 3, ``pool_pre_ping``, a bounded connect
timeout, and the configured schema put first on each connection's ``search_path``.

Nothing waits on the database unboundedly. A network partition leaves a socket open with
nothing coming back, which the kernel would keep for about 15 minutes: TCP keepalives find
a dead peer of an idle connection within a minute, and ``tcp_user_timeout`` gives up on
data sent but never acknowledged after 30 s. ``statement_timeout`` (60 s unless the caller
chooses; the operator takes 30 s) bounds what the server itself spends on one statement.
Migrations lift it for their own transaction (``migrate.py``): a long ``ALTER TABLE`` on a
big table is legitimate. Libpq parameters in the URL win over these defaults.

Why ``search_path`` and not ``schema_translate_map``: the schema then applies to everything
sent on the connection — ORM, Core, hand-written ``text()`` SQL (the scheduler's bulk
``unnest`` queries), Alembic's DDL and reflection — with no way to forget it. It is set as
a libpq start-up option (``options=-c search_path=…``), so it is in force before the first
statement, costs no round trip and survives pool resets. The schema is the only entry on the
path: a missing schema fails loudly instead of writing tables into ``public``. (PgBouncer
rejects start-up options unless ``ignore_startup_parameters = options``; behind one, give
the database role the settings instead: ``ALTER ROLE … SET search_path = beatkeeper`` and
``SET statement_timeout = '60s'``.)

A database that cannot be reached, or that goes away under a live connection (the server
restarted, the backend was terminated, the network dropped it), surfaces as
``DatabaseUnavailable``, whose message names the URL with its password masked: the one
type every component catches for "the database is down". The pool still discards the
broken connection, so the next use reconnects; a failed pre-ping stays a disconnect, which
the pool answers by reconnecting instead of raising. A statement the server gave up on for
a reason a retry can outlive (``statement_timeout``, ``lock_timeout``, a deadlock, a
serialization failure: ``RETRYABLE``) is a ``DatabaseUnavailable`` too, worded "a statement
failed on", so the operator backs off and the CLI prints one line instead of a traceback;
the connection stays in the pool, as it is still usable once the caller rolls back. A query
error (bad SQL, a constraint) keeps its own type: it is a bug, not an outage, except a table
of ours that is not there, ``SchemaMissing``: the schema was never migrated, or is another
one. This module must not hold queries or create tables.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
from sqlalchemy import Connection, Engine, create_engine, event, make_url, text
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.exc import ArgumentError, DBAPIError, InterfaceError, OperationalError

from beatkeeper.settings import PREFIX, Settings, SettingsError, mask_url
from beatkeeper.store.models import metadata

__all__ = [
    "CONNECT_TIMEOUT_SECONDS",
    "RETRYABLE",
    "STATEMENT_TIMEOUT_SECONDS",
    "UNDEFINED_TABLE",
    "Connection",
    "DatabaseUnavailable",
    "Engine",
    "SchemaMissing",
    "check_database_url",
    "make_engine",
    "masked_url",
    "ping",
    "schema_of",
    "translated_errors",
]

CONNECT_TIMEOUT_SECONDS = 10
STATEMENT_TIMEOUT_SECONDS = 60.0
#: libpq's TCP settings against a partitioned network (ignored on unix sockets).
TCP_SETTINGS: dict[str, int] = {
    "keepalives": 1,
    "keepalives_idle": 30,  # seconds idle before the first probe
    "keepalives_interval": 10,
    "keepalives_count": 3,
    "tcp_user_timeout": 30_000,  # milliseconds sent data may stay unacknowledged
}
_SCHEMA_OPTION = "beatkeeper_schema"


class DatabaseUnavailable(Exception):  # noqa: N818 (the name says what happened, like TimeoutError)
    """PostgreSQL cannot be reached, or was lost; ``url`` is safe to show (password masked).

    ``lost``: a connection that worked went away (the next use reconnects); ``failed``: the
    server gave up on a statement for a reason a later try can outlive (a statement or lock
    timeout, a deadlock); otherwise no connection could be made. The message says which, so
    nobody looks for a network fault that is not there.
    """

    def __init__(self, url: str, reason: str, *, lost: bool = False, failed: bool = False) -> None:
        self.url = url
        self.reason = reason
        self.lost = lost
        self.failed = failed
        if failed:
            message = f"a statement failed on PostgreSQL at {url}: {reason}"
        else:
            what = "lost the connection to" if lost else "cannot connect to"
            message = f"{what} PostgreSQL at {url}: {reason}"
        super().__init__(message)


#: SQLSTATE undefined_table: what PostgreSQL answers where beatkeeper's tables are missing.
UNDEFINED_TABLE = "42P01"

#: SQLSTATEs of statements the server gave up on that a later try can get through:
#: query_canceled (statement_timeout), lock_not_available (lock_timeout),
#: deadlock_detected, serialization_failure.
RETRYABLE = frozenset({"57014", "55P03", "40P01", "40001"})


class SchemaMissing(DatabaseUnavailable):
    """The server answers, but the configured schema has no beatkeeper tables (never
    migrated, or another schema than Beat's).

    A kind of ``DatabaseUnavailable``: nothing beatkeeper records can be written until
    ``beatkeeper migrate`` runs, so whoever waits out an outage (Beat's backoff, a worker's
    retries and requeue) waits this out too, saying what to do instead of "cannot connect".
    """

    def __init__(self, schema: str, url: str = "") -> None:
        message = f"schema {schema!r} has no beatkeeper tables: run `beatkeeper migrate`"
        super().__init__(url, message)
        self.schema = schema
        self.args = (message,)


def check_database_url(url: str) -> None:
    """``SettingsError`` unless ``make_engine`` can parse ``url`` (checked before connecting)."""
    try:
        make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise SettingsError(
            f"{PREFIX}DATABASE_URL is not a valid database URL: {mask_url(url)} ({exc})"
        ) from None


def make_engine(
    settings: Settings,
    *,
    application_name: str = "beatkeeper",
    statement_timeout: float | None = STATEMENT_TIMEOUT_SECONDS,
    **engine_options: Any,
) -> Engine:
    """A lazily connecting engine for ``settings.database_url`` in ``settings.db_schema``.

    ``statement_timeout`` is in seconds (None: the server's own setting). ``engine_options``
    go to ``sqlalchemy.create_engine`` (e.g. ``pool_size``); the connection arguments are
    this function's business.
    """
    url = make_url(settings.require_database_url())
    query = url.query
    options = [f"-c search_path={settings.db_schema}"]
    if statement_timeout is not None:
        options.insert(0, f"-c statement_timeout={round(statement_timeout * 1000)}")
    connect_args: dict[str, Any] = {
        # Appended to any options the URL carries, so the schema always wins.
        "options": _join(query.get("options"), " ".join(options)),
        **{key: value for key, value in TCP_SETTINGS.items() if key not in query},
    }
    if "connect_timeout" not in query:
        # Without it a black-holed host blocks a tick for minutes.
        connect_args["connect_timeout"] = CONNECT_TIMEOUT_SECONDS
    if "application_name" not in query:
        connect_args["application_name"] = application_name
    engine = create_engine(
        url,
        pool_pre_ping=True,
        connect_args=connect_args,
        execution_options={_SCHEMA_OPTION: settings.db_schema},
        **engine_options,
    )
    event.listen(engine, "handle_error", _unavailable(mask_url(str(url)), settings.db_schema))
    return engine


def schema_of(engine: Engine) -> str:
    """The schema an engine built by ``make_engine`` works in."""
    schema = engine.get_execution_options().get(_SCHEMA_OPTION)
    if not isinstance(schema, str):
        raise TypeError("this engine was not built by beatkeeper.store.engine.make_engine")
    return schema


def ping(engine: Engine) -> None:
    """Raise ``DatabaseUnavailable`` unless the database answers now (for start-up checks)."""
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))


@contextlib.contextmanager
def translated_errors(engine: Engine) -> Iterator[None]:
    """Raise ``DatabaseUnavailable`` for what the driver raised inside, past the engine's own
    translation (``handle_error`` sees only what SQLAlchemy runs): a connection closed under
    its holder, libpq used directly."""
    try:
        yield
    except (OperationalError, InterfaceError, psycopg.OperationalError) as error:
        original = getattr(error, "orig", None) or error
        reason = " ".join(str(original).split()).split(" [SQL:")[0] or type(error).__name__
        # A failed connect was translated already: what is left is a connection the server
        # refused a statement on (it has a SQLSTATE) or one that went away (none, or one of
        # class 08, connection exception, or 57P, the server ending the session).
        sqlstate = getattr(original, "sqlstate", None) or ""
        answered = bool(sqlstate) and not sqlstate.startswith(("08", "57P"))
        raise DatabaseUnavailable(
            masked_url(engine), reason, lost=not answered, failed=answered
        ) from error


def masked_url(engine: Engine) -> str:
    """``engine``'s URL as errors show it: the password as ``***``."""
    return mask_url(engine.url.render_as_string(hide_password=False))


def _primary(error: BaseException) -> str | None:
    """The server's own sentence for a psycopg error, without its "LINE 2: ..." pointer."""
    primary: str | None = getattr(getattr(error, "diag", None), "message_primary", None)
    return primary


_MISSING_RELATION = re.compile(r'relation "(?:[^"]+\.)?([^".]+)" does not exist')


def _ours_missing(error: BaseException) -> bool:
    """Whether PostgreSQL's "relation does not exist" names one of beatkeeper's tables.

    Read from the server's English wording: under another ``lc_messages`` it stays a query
    error (``ProgrammingError``)."""
    named = _MISSING_RELATION.search(_primary(error) or str(error))
    return named is not None and named.group(1) in metadata.tables


def _join(existing: str | tuple[str, ...] | None, option: str) -> str:
    if existing is None:
        return option
    parts = (existing,) if isinstance(existing, str) else existing
    return " ".join((*parts, option))


def _unavailable(url: str, schema: str) -> Callable[[ExceptionContext], Exception | None]:
    def handle_error(context: ExceptionContext) -> Exception | None:
        # A failed pre-ping must stay a disconnect so the pool reconnects instead of raising.
        if context.is_pre_ping:
            return None
        reason = " ".join(str(context.original_exception).split())
        if context.connection is None:  # connecting
            if isinstance(context.sqlalchemy_exception, OperationalError):
                return DatabaseUnavailable(url, reason)
            return None
        # SQLAlchemy asked the driver: the connection is closed or broken (the server went
        # away mid-statement, the backend was terminated, a socket timed out). Returning a
        # new exception keeps is_disconnect, so the pool still discards the connection.
        # A cancelled statement (statement_timeout) leaves the connection usable: not this.
        # Nor is an interrupt (KeyboardInterrupt, a cancelled task), which SQLAlchemy also
        # counts as a disconnect but never wraps as a driver error.
        if context.is_disconnect and isinstance(context.sqlalchemy_exception, DBAPIError):
            return DatabaseUnavailable(url, reason, lost=True)
        # The server gave up on this statement (a timeout, a deadlock); the session is fine.
        original = context.original_exception
        sqlstate = getattr(original, "sqlstate", None)
        if sqlstate in RETRYABLE:
            return DatabaseUnavailable(url, _primary(original) or reason, failed=True)
        # A table of ours is not there: the schema was never migrated (or is another one).
        # Any other missing relation is a query error like the rest.
        if sqlstate == UNDEFINED_TABLE and _ours_missing(original):
            return SchemaMissing(schema, url)
        return None

    return handle_error
