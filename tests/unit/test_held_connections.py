"""What Beat's held connections say about the database: the store's errors, never the driver's."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import InterfaceError, OperationalError, ProgrammingError

from beatkeeper.settings import Settings
from beatkeeper.store import DatabaseUnavailable, make_engine
from beatkeeper.store.engine import translated_errors

ENGINE = make_engine(  # never connected
    Settings(database_url="postgresql://bk:secret@127.0.0.1:1/bk", db_schema="team")
)


def test_a_lost_server_is_database_unavailable_with_the_password_masked() -> None:
    lost = OperationalError("SELECT 1", {}, Exception("server closed the connection\n"))
    with pytest.raises(DatabaseUnavailable) as raised, translated_errors(ENGINE):
        raise lost
    assert str(raised.value) == (
        "lost the connection to PostgreSQL at postgresql+psycopg://bk:***@127.0.0.1:1/bk: "
        "server closed the connection"
    )


class _QueryCanceledError(Exception):
    sqlstate = "57014"

    def __str__(self) -> str:
        return "canceling statement due to statement timeout"


def test_a_statement_the_server_refused_is_worded_as_such_not_as_a_network_fault() -> None:
    refused = OperationalError("SELECT 1", {}, _QueryCanceledError())
    with pytest.raises(DatabaseUnavailable) as raised, translated_errors(ENGINE):
        raise refused
    assert raised.value.failed
    assert str(raised.value) == (
        "a statement failed on PostgreSQL at postgresql+psycopg://bk:***@127.0.0.1:1/bk: "
        "canceling statement due to statement timeout"
    )


class _AdminShutdownError(Exception):
    sqlstate = "57P01"

    def __str__(self) -> str:
        return "terminating connection due to administrator command"


def test_a_session_the_server_ended_is_a_lost_connection_though_it_has_a_sqlstate() -> None:
    with pytest.raises(DatabaseUnavailable) as raised, translated_errors(ENGINE):
        raise OperationalError("SELECT 1", {}, _AdminShutdownError())
    assert (raised.value.lost, raised.value.failed) == (True, False)
    assert str(raised.value).startswith("lost the connection to PostgreSQL at ")


def test_a_closed_connection_is_database_unavailable() -> None:
    with pytest.raises(DatabaseUnavailable), translated_errors(ENGINE):
        raise InterfaceError("SELECT 1", {}, Exception("the connection is closed"))


def test_other_sql_errors_are_programming_errors_still() -> None:
    with pytest.raises(ProgrammingError), translated_errors(ENGINE):
        raise ProgrammingError("SELECT 1", {}, Exception("syntax error"))
