"""A database lost under a live connection is ``DatabaseUnavailable``, and the next use reconnects.

The server ends the session mid-use (``pg_terminate_backend``, as a restart or a failover
would): the statement running on it, or the next one sent, fails with the one error every
component catches for "the database is down", naming the URL with its password masked. The
pool discards the dead connection, so the engine works again as soon as the server does.
A statement the server gave up on (``statement_timeout``) is a ``DatabaseUnavailable``
worded as a failed statement, on a connection the pool keeps; a query error and an interrupt
keep their own type.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from typing import Any

import pytest
from sqlalchemy import Engine, event, make_url, text
from sqlalchemy.exc import DataError
from waiting import wait_for

from beatkeeper.settings import Settings
from beatkeeper.store import DatabaseUnavailable, SchemaMissing, make_engine

PASSWORD = "s3cret-not-shown"


@pytest.fixture
def with_password(settings: Settings) -> Settings:
    """The test database's URL with a password (ignored by a server that trusts the user)."""
    url = make_url(settings.require_database_url()).set(password=PASSWORD)
    return dataclasses.replace(settings, database_url=url.render_as_string(hide_password=False))


def _terminate(db: Engine, pid: int) -> None:
    with db.connect() as other:
        other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})


def _lost(error: DatabaseUnavailable) -> None:
    message = str(error)
    assert error.lost
    assert message.startswith("lost the connection to PostgreSQL at postgresql+psycopg://")
    assert ":***@" in message
    assert PASSWORD not in message


def test_a_session_terminated_between_statements_is_unavailable_then_reconnects(
    with_password: Settings, db: Engine
) -> None:
    engine = make_engine(with_password, pool_size=1, max_overflow=0)
    try:
        with engine.connect() as connection:
            pid = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
            _terminate(db, pid)
            with pytest.raises(DatabaseUnavailable) as caught:
                connection.execute(text("SELECT 1"))
        _lost(caught.value)
        with engine.connect() as connection:
            assert connection.execute(text("SELECT pg_backend_pid()")).scalar_one() != pid
    finally:
        engine.dispose()


def test_a_session_terminated_mid_statement_is_unavailable_then_reconnects(
    with_password: Settings, db: Engine
) -> None:
    engine = make_engine(with_password, pool_size=1, max_overflow=0)
    caught: list[BaseException] = []
    try:
        with engine.connect() as connection:
            pid = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()

            def sleep() -> None:
                try:
                    connection.execute(text("SELECT pg_sleep(30)"))
                except BaseException as error:
                    caught.append(error)

            sleeper = threading.Thread(target=sleep)
            sleeper.start()
            wait_for(lambda: _waiting_in_sleep(db, pid), timeout=10, what="the statement")
            _terminate(db, pid)
            sleeper.join(timeout=10)
        assert len(caught) == 1
        assert isinstance(caught[0], DatabaseUnavailable), caught[0]
        _lost(caught[0])
        with engine.connect() as connection:
            assert connection.execute(text("SELECT pg_backend_pid()")).scalar_one() != pid
    finally:
        engine.dispose()


def _waiting_in_sleep(db: Engine, pid: int) -> bool:
    with db.connect() as other:
        query = text("SELECT query FROM pg_stat_activity WHERE pid = :pid AND state = 'active'")
        running = other.execute(query, {"pid": pid}).scalar()
    return running is not None and "pg_sleep" in running


def test_a_statement_timeout_is_a_failed_statement_on_a_connection_kept(
    with_password: Settings,
) -> None:
    engine = make_engine(with_password, statement_timeout=0.1, pool_size=1, max_overflow=0)
    try:
        with engine.connect() as connection:
            pid = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
            with pytest.raises(DatabaseUnavailable) as caught:
                connection.execute(text("SELECT pg_sleep(2)"))
            connection.rollback()
            assert connection.execute(text("SELECT 1")).scalar_one() == 1  # still usable
        with engine.connect() as connection:  # and kept by the pool, not reconnected
            assert connection.execute(text("SELECT pg_backend_pid()")).scalar_one() == pid
    finally:
        engine.dispose()
    assert (caught.value.failed, caught.value.lost) == (True, False)
    message = str(caught.value)
    assert message.startswith("a statement failed on PostgreSQL at postgresql+psycopg://")
    assert message.endswith("canceling statement due to statement timeout")
    assert PASSWORD not in message


def test_a_schema_never_migrated_says_to_migrate(settings: Settings) -> None:
    elsewhere = dataclasses.replace(settings, db_schema="bk_never_migrated")
    engine = make_engine(elsewhere)
    try:
        with engine.connect() as connection, pytest.raises(SchemaMissing) as caught:
            connection.execute(text("SELECT count(*) FROM runs"))
    finally:
        engine.dispose()
    assert isinstance(caught.value, DatabaseUnavailable)  # waited out like an outage
    assert str(caught.value) == (
        "schema 'bk_never_migrated' has no beatkeeper tables: run `beatkeeper migrate`"
    )


def test_a_query_error_keeps_its_own_type(settings: Settings) -> None:
    engine = make_engine(settings)
    try:
        with engine.connect() as connection, pytest.raises(DataError):
            connection.execute(text("SELECT 1 / 0"))
    finally:
        engine.dispose()


def test_an_interrupted_statement_is_not_unavailability(settings: Settings) -> None:
    engine = make_engine(settings)

    def interrupt(*_: Any) -> None:
        raise asyncio.CancelledError  # as a cancelled task or Ctrl-C arrives mid-statement

    try:
        with engine.connect() as connection:
            event.listen(connection, "before_cursor_execute", interrupt)
            with pytest.raises(asyncio.CancelledError):
                connection.execute(text("SELECT 1"))
        with engine.connect() as connection:
            assert connection.execute(text("SELECT 1")).scalar_one() == 1
    finally:
        engine.dispose()
