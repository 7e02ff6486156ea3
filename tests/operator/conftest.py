"""The real operator (``kopf.operator()``) against the API emulator and PostgreSQL.

``cluster`` starts the emulator on the test's event loop; ``start_operator`` runs the
operator's handlers (imported from ``beatkeeper_operator.handlers``, kopf's default
registry) in a thread with its own event loop until the test ends or asks it to stop (for
restart tests). Its own loop matters for speed: kopf treats every task on its loop that it
did not find at start-up as its own and waits 5 s for them on exit, and the emulator's
watch streams would be such tasks. ``database_proxy`` gives a database URL that a test can
cut. Helpers poll with a deadline instead of sleeping.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import beatkeeper_operator.handlers  # noqa: F401 (registers the handlers)
import kmock
import kopf
import pytest
from beatkeeper_operator.runtime import OperatorConfig
from beatkeeper_operator.webhook import WebhookConfig
from emulator import Emulator, make_emulator
from proxy import DatabaseProxy
from sqlalchemy import Engine

from beatkeeper.policy import Policy
from beatkeeper.settings import Settings

_server_url: list[str] = []


@kopf.on.login()
def login_to_emulator(**_: Any) -> kopf.ConnectionInfo:
    return kopf.ConnectionInfo(server=_server_url[-1], scheme="Bearer", token="test")


@pytest.fixture
async def cluster() -> AsyncIterator[Emulator]:
    emulator = make_emulator()
    async with emulator, kmock.Server(emulator) as server:
        _server_url.append(str(server.url).rstrip("/"))
        yield emulator
        _server_url.pop()


@pytest.fixture
def cluster_url(cluster: Emulator) -> str:
    """The URL the emulator of ``cluster`` serves on, for clients outside kopf."""
    return _server_url[-1]


class OperatorHandle:
    """One operator run in its own thread and event loop."""

    def __init__(self, config: OperatorConfig) -> None:
        self.config = config
        self.memo = kopf.Memo(config=config)
        self.stop_flag = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="operator", daemon=True)

    @property
    def runtime(self) -> Any:
        return self.memo.get("runtime")

    def _run(self) -> None:
        try:
            namespaces = self.config.settings.namespaces
            asyncio.run(
                kopf.operator(
                    clusterwide=not namespaces,
                    namespaces=namespaces,
                    standalone=True,
                    memo=self.memo,
                    stop_flag=self.stop_flag,
                )
            )
        except BaseException as exc:  # reported by stop(), on the test's thread
            self.error = exc

    async def stop(self) -> None:
        self.stop_flag.set()
        await asyncio.to_thread(self.thread.join, 20)
        assert not self.thread.is_alive(), "the operator did not stop within 20 s"
        runtime = self.runtime
        if runtime is not None:
            # kopf's cleanup stops the pools without waiting: a query still running in one
            # would hold locks that the next test's TRUNCATE deadlocks on.
            for pool in (runtime.executor, runtime.reconciler):
                await asyncio.to_thread(pool.shutdown, wait=True)
        if self.error is not None:
            raise self.error


@pytest.fixture
async def start_operator(
    cluster: Emulator, settings: Settings, db: Engine
) -> AsyncIterator[Callable[..., Awaitable[OperatorHandle]]]:
    handles: list[OperatorHandle] = []

    async def start(
        *,
        policy: Policy | None = None,
        settings_: Settings | None = None,
        webhook: WebhookConfig | None = None,
        **config_: Any,
    ) -> OperatorHandle:
        timings: dict[str, Any] = {
            "refresh_interval": 0.2,
            "event_interval": 0.0,
            "max_backoff": 1.0,
            **config_,
        }
        config = OperatorConfig(
            settings=settings_ or settings,
            policy=policy or Policy(),
            webhook=webhook,
            **timings,
        )
        handle = OperatorHandle(config)
        handle.thread.start()
        handles.append(handle)
        return handle

    yield start
    for handle in handles:
        await handle.stop()


@pytest.fixture
def database_proxy(settings: Settings) -> Iterator[tuple[DatabaseProxy, Settings]]:
    """A proxy to the test database, and settings that reach the database through it."""
    proxy = DatabaseProxy(settings.require_database_url()).start()
    try:
        yield proxy, dataclasses.replace(settings, database_url=proxy.url)
    finally:
        proxy.close()
