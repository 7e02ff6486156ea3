"""The reliability suite's fixture: a PostgreSQL and a Redis of its own, which it restarts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from reliability_harness import PostgresServer, RedisServer, Scenario

from beatkeeper.settings import Settings
from beatkeeper.store import make_engine, migrate


@pytest.fixture
def scenario(tmp_path: Path) -> Iterator[tuple[Scenario, PostgresServer, RedisServer]]:
    postgres = PostgresServer(tmp_path / "postgres")
    redis_server = RedisServer(tmp_path)
    redis_server.start()
    settings = Settings(database_url=postgres.url, db_schema="reliability")
    engine = make_engine(settings, pool_size=4)
    migrate.upgrade(engine)
    try:
        yield Scenario(settings, engine, redis_server.url, tmp_path), postgres, redis_server
    finally:
        engine.dispose()
        redis_server.stop()
        postgres.stop()
