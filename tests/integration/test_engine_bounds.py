"""No database call waits unboundedly: statement timeout and TCP settings on every engine."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from beatkeeper.settings import Settings
from beatkeeper.store import DatabaseUnavailable, make_engine, migrate


def test_a_statement_over_the_timeout_is_cancelled(settings: Settings) -> None:
    engine = make_engine(settings, statement_timeout=0.2)
    try:
        with engine.connect() as connection, pytest.raises(DatabaseUnavailable) as caught:
            connection.execute(text("SELECT pg_sleep(2)"))
        assert caught.value.failed
        assert "canceling statement due to statement timeout" in str(caught.value)
    finally:
        engine.dispose()


def test_every_engine_has_a_statement_timeout_and_tcp_keepalives(settings: Settings) -> None:
    engine = make_engine(settings)
    try:
        with engine.connect() as connection:
            assert connection.execute(text("SHOW statement_timeout")).scalar() == "1min"
            parameters = connection.connection.dbapi_connection.info.get_parameters()  # type: ignore[union-attr]
    finally:
        engine.dispose()
    assert parameters["keepalives"] == "1"
    assert parameters["tcp_user_timeout"] == "30000"


def test_migrations_run_without_a_statement_timeout(settings: Settings) -> None:
    engine = make_engine(settings, statement_timeout=0.05)
    try:
        with migrate._connected(engine, None) as (connection, _):
            assert connection.execute(text("SHOW statement_timeout")).scalar() == "0"
        with engine.connect() as connection:
            assert connection.execute(text("SHOW statement_timeout")).scalar() == "50ms"
    finally:
        engine.dispose()
