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


class _ServerError(Exception):
    """A driver error as the server words it, with its SQLSTATE."""

    def __init__(self, sqlstate: str, text: str) -> None:
        super().__init__(text)
        self.sqlstate = sqlstate


@pytest.mark.parametrize(
    ("sqlstate", "text", "wording"),
    [
        # The server gave up on one statement: the session is fine.
        ("57014", "canceling statement due to statement timeout", "a statement failed on"),
        # The server ended the session: a SQLSTATE, yet the connection is gone.
        ("57P01", "terminating connection due to administrator command", "lost the connection to"),
    ],
)
def test_what_the_server_said_decides_the_wording_not_a_network_fault(
    sqlstate: str, text: str, wording: str
) -> None:
    with pytest.raises(DatabaseUnavailable) as raised, translated_errors(ENGINE):
        raise OperationalError("SELECT 1", {}, _ServerError(sqlstate, text))
    assert (raised.value.failed, raised.value.lost) == (
        wording == "a statement failed on",
        wording == "lost the connection to",
    )
    assert str(raised.value) == (
        f"{wording} PostgreSQL at postgresql+psycopg://bk:***@127.0.0.1:1/bk: {text}"
    )


def test_a_closed_connection_is_database_unavailable() -> None:
    with pytest.raises(DatabaseUnavailable), translated_errors(ENGINE):
        raise InterfaceError("SELECT 1", {}, Exception("the connection is closed"))


def test_other_sql_errors_are_programming_errors_still() -> None:
    with pytest.raises(ProgrammingError), translated_errors(ENGINE):
        raise ProgrammingError("SELECT 1", {}, Exception("syntax error"))
