"""The reliability suite's fixture: a PostgreSQL and a Redis of its own, which it restarts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from reliability_harness import Scenario
from reliability_servers import PostgresServer, RedisServer

from beatkeeper.settings import Settings
from beatkeeper.store import make_engine, migrate


@pytest.fixture
def scenario(tmp_path: Path) -> Iterator[Scenario]:
    postgres = PostgresServer(tmp_path / "postgres")
    redis_server = RedisServer(tmp_path)
    redis_server.start()
    settings = Settings(database_url=postgres.url, db_schema="reliability")
    engine = make_engine(settings, pool_size=4)
    migrate.upgrade(engine)
    scenario = Scenario(settings, engine, postgres, redis_server, tmp_path)
    scenario.create_bodies_table()
    try:
        yield scenario
    finally:
        engine.dispose()
        redis_server.stop()
        postgres.stop()
