"""The connections every example task shares, and the creation of the example tables.

The tables (``tables``) live in the schema ``beatkeeper_examples`` of the database
beatkeeper already uses (``BEATKEEPER_DATABASE_URL``), so ``beatkeeper dev`` needs nothing
more. They are created on first use, under an advisory lock because two worker processes
may get there at once; a fresh schema gets a small deterministic seed (``seed``) so every
example schedule has something to act on. A schema left by an older layout of the examples
(``LAYOUT_VERSION``) is dropped and created again: it holds example data only.
``BEATKEEPER_EXAMPLES_SCHEMA`` moves the tables elsewhere.

Tests hand their own engine and Redis client to ``use``. This module holds no task logic.
"""

from __future__ import annotations

import logging
import os
import threading
from datetime import UTC, datetime

import redis
from sqlalchemy import Connection, Engine, func, insert, select, text

from beatkeeper.settings import Settings
from beatkeeper.store.engine import make_engine
from beatkeeper_examples import seed, tables

__all__ = ["LAYOUT_VERSION", "connect", "prepare", "redis_client", "schema_of", "use"]

SCHEMA_ENV = "BEATKEEPER_EXAMPLES_SCHEMA"
#: Raised whenever a table changes shape; ``prepare`` rebuilds an older schema.
LAYOUT_VERSION = 2
_LOCK_KEY = 0x6265_6174_6578  # "beatex": one advisory lock for creating the tables

log = logging.getLogger(__name__)
_lock = threading.Lock()
_engine: Engine | None = None
_redis: redis.Redis | None = None


def use(engine: Engine | None, client: redis.Redis | None = None) -> None:
    """Make the tasks use ``engine`` (already ``prepare``d) and ``client``: the test seam.

    None goes back to connecting from the environment on next use.
    """
    global _engine, _redis
    _engine, _redis = engine, client


def connect() -> Engine:
    """This process's engine on the example tables, created and seeded on first use."""
    global _engine  # noqa: PLW0603
    with _lock:
        if _engine is None:
            schema = os.environ.get(SCHEMA_ENV, "").strip() or tables.SCHEMA
            base = make_engine(Settings.from_env(), application_name="beatkeeper-examples")
            engine = base.execution_options(schema_translate_map={tables.SCHEMA: schema})
            prepare(engine, seed_if_new=True)
            _engine = engine
        return _engine


def redis_client() -> redis.Redis:
    """A Redis client on ``BEATKEEPER_BROKER_URL``'s server (for cooldown keys)."""
    global _redis  # noqa: PLW0603
    with _lock:
        if _redis is None:
            _redis = redis.Redis.from_url(Settings.from_env().require_broker_url())
        return _redis


def schema_of(engine: Engine) -> str:
    """The schema the example tables are in for ``engine``."""
    translate = engine.get_execution_options().get("schema_translate_map") or {}
    return str(translate.get(tables.SCHEMA, tables.SCHEMA))


def prepare(engine: Engine, *, seed_if_new: bool) -> None:
    """Create the schema and tables if missing (or outdated); seed them when just created."""
    schema = schema_of(engine)
    with engine.begin() as conn:
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
        version = _layout_version(conn, schema)
        if version == LAYOUT_VERSION:
            return
        if version is not None or _has_tables(conn, schema):
            log.warning("example schema %s has an older layout: dropping and re-creating", schema)
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        tables.metadata.create_all(conn)
        conn.execute(insert(tables.schema_info).values(version=LAYOUT_VERSION))
        if seed_if_new:
            seed.seed(conn, now=datetime.now(UTC))


def _layout_version(conn: Connection, schema: str) -> int | None:
    if conn.execute(select(func.to_regclass(f'"{schema}".schema_info'))).scalar() is None:
        return None
    return conn.execute(select(func.max(tables.schema_info.c.version))).scalar()


def _has_tables(conn: Connection, schema: str) -> bool:
    query = text("SELECT count(*) FROM pg_tables WHERE schemaname = :schema")
    return bool(conn.execute(query, {"schema": schema}).scalar())
