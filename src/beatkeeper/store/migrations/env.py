"""Alembic's entry point for beatkeeper's migrations.

Normally ``beatkeeper.store.migrate`` runs Alembic and hands over a connection that is
already inside a transaction, holds the migration lock and has ``search_path`` set to the
target schema; this script then only runs the revisions on it. Run from the ``alembic``
command line instead (for ``alembic revision --autogenerate`` while developing), it builds
an engine from the ``BEATKEEPER_*`` environment like every other component.

The revisions name no schema. This script must not set one either: the schema comes from
the connection's ``search_path``, which is what makes it configurable at run time.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from beatkeeper.settings import Settings
from beatkeeper.store.engine import make_engine
from beatkeeper.store.models import metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        compare_server_default=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _main() -> None:
    if context.is_offline_mode():
        raise SystemExit("beatkeeper migrations run online only: use `beatkeeper migrate`")
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(Settings.from_env(), application_name="beatkeeper-alembic")
    try:
        with engine.connect() as own_connection:
            _run(own_connection)
            own_connection.commit()
    finally:
        engine.dispose()


_main()
