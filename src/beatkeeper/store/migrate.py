"""Bring a database schema to the current table layout with Alembic, from Python.

``upgrade`` is what ``beatkeeper migrate``, ``beatkeeper dev``, the Helm hook and the test
session call; there is no ``alembic.ini``. The schema to migrate is chosen at run time: the
migrations themselves name no schema (they follow ``search_path``), and this module points
``search_path`` at the schema for the duration of one transaction. All migrations run in
that single transaction (PostgreSQL has transactional DDL), under an advisory lock, so two
replicas starting at once migrate one after the other and a failed migration leaves nothing
half-done.

This module must not be imported on a hot path (Alembic is slow to import) and must not
create tables any other way than through the scripts in ``migrations/versions/``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text

from beatkeeper.settings import Settings, check_schema_name
from beatkeeper.store.engine import make_engine, schema_of

__all__ = [
    "MIGRATIONS",
    "alembic_config",
    "current_revision",
    "downgrade",
    "head_revision",
    "upgrade",
]

MIGRATIONS = Path(__file__).with_name("migrations")

# pg_advisory_xact_lock(class, key): the class keeps beatkeeper's lock apart from any other
# application's advisory locks; the key is the schema, so different schemas migrate in parallel.
_LOCK_CLASS = 0x6B7  # "bk"


def upgrade(
    target: Engine | Settings, schema: str | None = None, *, revision: str = "head"
) -> None:
    """Create ``schema`` if needed and apply every migration up to ``revision``.

    ``schema`` defaults to the one the engine (or settings) is configured for.
    """
    with _migrating(target, schema, create=True) as (connection, name):
        command.upgrade(alembic_config(connection, name), revision)


def downgrade(target: Engine | Settings, schema: str | None = None, *, revision: str) -> None:
    """Revert migrations down to ``revision`` (``"base"`` drops every table, not the schema)."""
    with _migrating(target, schema, create=False) as (connection, name):
        command.downgrade(alembic_config(connection, name), revision)


def current_revision(target: Engine | Settings, schema: str | None = None) -> str | None:
    """The revision ``schema`` is at, or ``None`` if it was never migrated."""
    with _connected(target, schema) as (connection, _):
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str:
    """The newest revision shipped with this version of beatkeeper."""
    head = ScriptDirectory.from_config(alembic_config(None, "")).get_current_head()
    assert head is not None, "no migration scripts found"
    return head


def alembic_config(connection: Connection | None, schema: str) -> Config:
    """An Alembic ``Config`` whose ``env.py`` runs on ``connection`` (no ini file involved)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    config.attributes["schema"] = schema
    return config


@contextmanager
def _migrating(
    target: Engine | Settings, schema: str | None, *, create: bool
) -> Iterator[tuple[Connection, str]]:
    with _connected(target, schema) as (connection, name):
        connection.execute(
            text("SELECT pg_advisory_xact_lock(:cls, hashtext(:schema))"),
            {"cls": _LOCK_CLASS, "schema": name},
        )
        # Ask first: CREATE SCHEMA IF NOT EXISTS needs the CREATE privilege on the database
        # even when the schema exists, and a DBA may have created it for a humbler role.
        exists = connection.execute(
            text("SELECT 1 FROM pg_namespace WHERE nspname = :schema"), {"schema": name}
        ).first()
        if create and exists is None:
            # Quoting is safe: check_schema_name allows only [a-z0-9_].
            connection.execute(text(f'CREATE SCHEMA "{name}"'))
        yield connection, name


@contextmanager
def _connected(target: Engine | Settings, schema: str | None) -> Iterator[tuple[Connection, str]]:
    if isinstance(target, Settings):
        engine = make_engine(target, application_name="beatkeeper-migrate")
    else:
        engine = target
    name = check_schema_name(schema or schema_of(engine))
    try:
        with engine.connect() as connection, connection.begin():
            # is_local=true: back to the engine's own settings once this transaction ends.
            connection.execute(text("SELECT set_config('search_path', :s, true)"), {"s": name})
            # A migration may rewrite a big table: no statement_timeout while it runs.
            connection.execute(text("SELECT set_config('statement_timeout', '0', true)"))
            yield connection, name
    finally:
        if engine is not target:
            engine.dispose()
