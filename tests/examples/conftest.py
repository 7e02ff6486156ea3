"""Fixtures for the example workloads: their tables in a throwaway schema, and Redis.

``examples`` gives each test empty example tables (in ``bkx_test_<random>``, dropped at the
end of the session) and a Redis without this session's cooldown keys, and points the
example tasks at both through ``beatkeeper_examples.db.use``.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator

import beatkeeper_examples.tasks  # noqa: F401 - registers the shared tasks
import pytest
import redis
from beatkeeper_examples import db, dispatch, tables
from celery import Celery
from sqlalchemy import Engine, insert, text

from beatkeeper.settings import Settings
from beatkeeper.store.engine import make_engine


@pytest.fixture(scope="session")
def examples_app() -> Celery:
    """A Celery app of the tests' own, holding the example tasks.

    The tasks are ``shared_task``s: they resolve through Celery's *current* app, which an
    earlier test may have left as beatkeeper's environment-configured app.
    """
    app = Celery("beatkeeper-examples-tests", broker="memory://", set_as_current=False)
    app.conf.update(task_serializer="json", accept_content=["json"])
    app.finalize()
    return app


@pytest.fixture(autouse=True)
def _examples_app_is_current(examples_app: Celery) -> None:
    examples_app.set_current()


@pytest.fixture(scope="session")
def examples_engine(settings: Settings) -> Iterator[Engine]:
    schema = f"bkx_test_{secrets.token_hex(4)}"
    base = make_engine(settings, application_name="beatkeeper-examples-tests")
    engine = base.execution_options(schema_translate_map={tables.SCHEMA: schema})
    db.prepare(engine, seed_if_new=False)
    try:
        yield engine
    finally:
        with base.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        base.dispose()


@pytest.fixture(scope="session")
def examples_redis(broker_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(broker_url)
    yield client
    client.close()


@pytest.fixture
def examples(examples_engine: Engine, examples_redis: redis.Redis) -> Iterator[Engine]:
    names = ", ".join(
        f'"{db.schema_of(examples_engine)}"."{t.name}"'
        for t in tables.metadata.sorted_tables
        if t is not tables.schema_info
    )
    with examples_engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY"))
    for key in examples_redis.scan_iter(f"{db.schema_of(examples_engine)}:*"):
        examples_redis.delete(key)
    db.use(examples_engine, examples_redis)
    yield examples_engine
    db.use(None)


@pytest.fixture
def sink(examples: Engine) -> Iterator[dispatch.LocalSink]:
    """A fresh ``LocalSink`` as the process's sender: what the examples notified."""
    fresh = dispatch.LocalSink()
    previous = dispatch.use_sender(fresh)
    yield fresh
    dispatch.use_sender(previous)


AddUser = Callable[..., int]


@pytest.fixture
def add_user(examples: Engine) -> AddUser:
    """Insert a user (``name``, ``time_zone`` and any other column); its id."""

    def add(name: str, time_zone: str = "UTC", **values: object) -> int:
        with examples.begin() as conn:
            row = insert(tables.users).values(name=name, time_zone=time_zone, **values)
            return int(conn.execute(row.returning(tables.users.c.id)).scalar_one())

    return add
