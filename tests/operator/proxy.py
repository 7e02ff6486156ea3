"""A TCP proxy to PostgreSQL that a test can cut and restore, to play a database outage.

It runs its own event loop in a thread, so cutting it does not depend on the test's loop
(or the operator's) being free. ``cut()`` refuses new connections and drops open ones, as
a database that went away would; ``restore()`` listens again on the same port. ``stall()``
plays a network partition: every socket stays open and nothing is forwarded either way,
so a client learns of it only from its own timeouts; ``restore()`` forwards again. The
target is a TCP address or a unix socket (the embedded PostgreSQL listens on one).

Test-side only: nothing in the product imports it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from typing import Any

from sqlalchemy import make_url


class DatabaseProxy:
    def __init__(self, database_url: str) -> None:
        self.target = make_url(database_url)
        self.port = _free_port()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._flowing: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    @property
    def url(self) -> str:
        """The database URL through the proxy."""
        query = {key: value for key, value in self.target.query.items() if key != "host"}
        proxied = self.target.set(host="127.0.0.1", port=self.port, query=query)
        return proxied.render_as_string(hide_password=False)

    def start(self) -> DatabaseProxy:
        self._thread.start()
        self.restore()
        return self

    def cut(self) -> None:
        asyncio.run_coroutine_threadsafe(self._cut(), self._loop).result(timeout=10)

    def restore(self) -> None:
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(timeout=10)

    def stall(self) -> None:
        asyncio.run_coroutine_threadsafe(self._stall(), self._loop).result(timeout=10)

    async def _stall(self) -> None:
        self._flow().clear()

    def _flow(self) -> asyncio.Event:
        if self._flowing is None:  # created on the proxy's own loop
            self._flowing = asyncio.Event()
            self._flowing.set()
        return self._flowing

    def close(self) -> None:
        self.cut()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    async def _listen(self) -> None:
        self._flow().set()
        if self._server is None:
            self._server = await asyncio.start_server(
                self._pipe_client, "127.0.0.1", self.port, reuse_address=True
            )

    async def _cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _pipe_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            upstream = await self._open_upstream()
        except OSError:
            writer.transport.abort()
            return
        up_reader, up_writer = upstream
        self._writers.update({writer, up_writer})
        flowing = self._flow()
        await asyncio.gather(_pump(reader, up_writer, flowing), _pump(up_reader, writer, flowing))
        self._writers.difference_update({writer, up_writer})

    async def _open_upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        socket_dir: Any = self.target.query.get("host")
        if socket_dir and str(socket_dir).startswith("/"):
            path = f"{socket_dir}/.s.PGSQL.{self.target.port or 5432}"
            return await asyncio.open_unix_connection(path)
        return await asyncio.open_connection(self.target.host, self.target.port or 5432)


async def _pump(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, flowing: asyncio.Event
) -> None:
    with contextlib.suppress(OSError, ConnectionError):
        while data := await reader.read(65536):
            await flowing.wait()
            writer.write(data)
            await writer.drain()
    writer.transport.abort()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port
