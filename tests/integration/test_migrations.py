"""Migrations build exactly the tables the models describe, in whichever schema is configured.

Also pins the engine behaviour migrations depend on: the schema comes from ``search_path``,
and an unreachable server is a clear ``DatabaseUnavailable``, never a traceback.
"""

from __future__ import annotations

import dataclasses
import secrets
import socket
import threading
from collections.abc import Iterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, Engine, create_engine, inspect, text
from sqlalchemy.exc import IntegrityError, ProgrammingError

from beatkeeper.settings import Settings
from beatkeeper.store import DatabaseUnavailable, make_engine, metadata, migrate, ping, schema_of

TABLES = {"schedules", "runs", "run_counts", "rate_budgets", "rate_sends", "cancel_requests"}


@pytest.fixture
def fresh(settings: Settings) -> Iterator[Engine]:
    """An engine on a schema of its own that no migration has touched yet."""
    schema = f"bk_mig_{secrets.token_hex(4)}"
    engine = make_engine(dataclasses.replace(settings, db_schema=schema))
    try:
        yield engine
    finally:
        engine.dispose()
        with engine.begin() as connection:
            connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()


def differences(engine: Engine) -> list[object]:
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "compare_server_default": True}
        )
        return list(compare_metadata(context, metadata))


def tables_in(connection: Connection, schema: str) -> set[str]:
    return set(inspect(connection).get_table_names(schema=schema))


def catalog(connection: Connection, schema: str) -> dict[str, list[tuple[object, ...]]]:
    """What PostgreSQL itself says about a schema, with the schema name taken out."""
    queries = {
        "columns": """
            SELECT table_name, column_name, data_type, is_nullable, column_default
            FROM information_schema.columns WHERE table_schema = :s""",
        "constraints": """
            SELECT rel.relname, con.conname, pg_get_constraintdef(con.oid)
            FROM pg_constraint con JOIN pg_class rel ON rel.oid = con.conrelid
            WHERE rel.relnamespace = CAST(:s AS regnamespace)""",
        "indexes": """
            SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = :s""",
    }
    found = {}
    for name, query in queries.items():
        rows = connection.execute(text(query), {"s": schema}).all()
        found[name] = sorted(
            tuple(str(v).replace(f"{schema}.", "") for v in row if v is not None)
            for row in rows
            if row[0] != "alembic_version"  # Alembic's bookkeeping, not a model
        )
    return found


def test_migrations_create_what_the_models_describe(fresh: Engine) -> None:
    migrate.upgrade(fresh)
    assert differences(fresh) == []


def test_migrated_schema_is_identical_to_one_created_from_the_models(
    fresh: Engine, engine: Engine
) -> None:
    # compare_metadata ignores CHECK constraints and partial-index predicates; the catalog
    # does not.
    migrate.upgrade(fresh)
    from_models_schema = f"bk_models_{secrets.token_hex(4)}"
    with engine.connect() as connection:
        # Created and rolled back in one transaction: nothing to clean up, nothing shared.
        connection.execute(text(f"CREATE SCHEMA {from_models_schema}"))
        connection.execute(text(f"SET LOCAL search_path TO {from_models_schema}"))
        try:
            metadata.create_all(connection)
            from_models = catalog(connection, from_models_schema)
            migrated = catalog(connection, schema_of(fresh))
        finally:
            connection.rollback()
    assert migrated == from_models
    assert {row[1] for row in from_models["indexes"]} >= {
        "uq_schedules_namespace_name",
        "ix_schedules_due",
        "uq_runs_schedule_id_planned_at",
        "ix_runs_publishable",
        "ix_runs_active",
    }


def test_downgrade_to_base_and_upgrade_again(fresh: Engine) -> None:
    migrate.upgrade(fresh)
    migrate.downgrade(fresh, revision="base")
    with fresh.connect() as connection:
        assert tables_in(connection, schema_of(fresh)) == {"alembic_version"}
    assert migrate.current_revision(fresh) is None
    migrate.upgrade(fresh)
    assert migrate.current_revision(fresh) == migrate.head_revision()
    assert differences(fresh) == []


def test_upgrade_twice_changes_nothing(fresh: Engine) -> None:
    migrate.upgrade(fresh)
    migrate.upgrade(fresh)
    assert migrate.current_revision(fresh) == migrate.head_revision() == "0006"


def test_a_run_owner_written_as_one_string_is_split_into_columns_and_joined_back(
    fresh: Engine,
) -> None:
    migrate.upgrade(fresh, revision="0004")
    owners = ("celery@h (pid 41, session 0123456789ab)", "celery@h", None)
    with fresh.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO schedules (id, namespace, name, generation, spec, spec_hash, task,"
                " zone, trigger) VALUES (gen_random_uuid(), 'ns', 'n', 1, '{}', 'h', 't', 'UTC',"
                " 'x')"
            )
        )
        for n, owner in enumerate(owners):
            connection.execute(
                text(
                    "INSERT INTO runs (schedule_id, planned_at, due_at, task, worker)"
                    " SELECT id, now() + :n * interval '1 second', now(), 't', :owner"
                    " FROM schedules"
                ),
                {"n": n, "owner": owner},
            )
    read = text("SELECT worker, worker_pid, worker_session FROM runs ORDER BY planned_at")
    migrate.upgrade(fresh)
    with fresh.connect() as connection:
        assert [tuple(row) for row in connection.execute(read)] == [
            ("celery@h", 41, "0123456789ab"),
            ("celery@h", None, None),
            (None, None, None),
        ]
    migrate.downgrade(fresh, revision="0004")
    with fresh.connect() as connection:
        joined = text("SELECT worker FROM runs ORDER BY planned_at")
        assert tuple(connection.execute(joined).scalars()) == owners


def test_tables_go_to_the_configured_schema_and_nowhere_else(fresh: Engine) -> None:
    schema = schema_of(fresh)
    assert migrate.current_revision(fresh) is None
    migrate.upgrade(fresh)
    with fresh.connect() as connection:
        assert tables_in(connection, schema) == TABLES | {"alembic_version"}
        assert not tables_in(connection, "public") & TABLES
        assert connection.execute(text("SELECT current_schema()")).scalar_one() == schema


def test_upgrade_takes_the_schema_from_settings(settings: Settings) -> None:
    schema = f"bk_set_{secrets.token_hex(4)}"
    target = dataclasses.replace(settings, db_schema=schema)
    try:
        migrate.upgrade(target)
        assert migrate.current_revision(target) == migrate.head_revision()
    finally:
        with make_engine(settings).begin() as connection:
            connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


def test_upgrade_may_name_another_schema_than_the_engines(fresh: Engine, engine: Engine) -> None:
    migrate.upgrade(engine, schema_of(fresh))
    assert migrate.current_revision(fresh) == migrate.head_revision()
    # The engine's own connections are back on its own schema afterwards.
    with engine.connect() as connection:
        assert connection.execute(text("SELECT current_schema()")).scalar_one() == schema_of(engine)


def test_replicas_migrating_at_once_both_succeed(fresh: Engine) -> None:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            migrate.upgrade(fresh)
        except BaseException as error:  # re-raised below, in the test's thread
            errors.append(error)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert migrate.current_revision(fresh) == migrate.head_revision()


def test_the_check_constraint_refuses_unknown_states(db: Engine) -> None:
    with db.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO schedules (id, namespace, name, generation, spec, spec_hash, task,"
                " zone, trigger) VALUES (gen_random_uuid(), 'ns', 'n', 1, '{}', 'h', 't', 'UTC',"
                " 'every 1m')"
            )
        )
    with pytest.raises(IntegrityError, match="ck_runs_state"), db.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO runs (schedule_id, planned_at, due_at, task, state)"
                " SELECT id, now(), now(), 't', 'paused' FROM schedules"
            )
        )


# --- the engine ------------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_an_unreachable_server_is_reported_with_a_masked_url() -> None:
    port = _closed_port()
    settings = Settings(database_url=f"postgresql://bk:s3cret@127.0.0.1:{port}/bk")
    with pytest.raises(DatabaseUnavailable) as caught:
        migrate.upgrade(settings)
    message = str(caught.value)
    assert message.startswith(
        f"cannot connect to PostgreSQL at postgresql+psycopg://bk:***@127.0.0.1:{port}/bk: "
    )
    assert "s3cret" not in message
    assert "refused" in message.lower()


def test_a_query_error_is_not_mistaken_for_an_unreachable_server(db: Engine) -> None:
    with pytest.raises(ProgrammingError, match="no_such_table"), db.connect() as connection:
        connection.execute(text("SELECT * FROM no_such_table"))


def test_the_pool_reconnects_after_the_server_drops_a_connection(
    settings: Settings, db: Engine
) -> None:
    single = make_engine(settings, pool_size=1, max_overflow=0)
    try:
        with single.connect() as connection:
            pid = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
        with db.connect() as other:
            other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        # The pool's only connection is dead; pre-ping notices and replaces it.
        with single.connect() as connection:
            assert connection.execute(text("SELECT pg_backend_pid()")).scalar_one() != pid
        ping(single)
    finally:
        single.dispose()


def test_schema_of_refuses_foreign_engines() -> None:
    with pytest.raises(TypeError, match="make_engine"):
        schema_of(create_engine("sqlite://"))
