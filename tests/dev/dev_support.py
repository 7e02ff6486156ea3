"""The shared `beatkeeper dev` stack for these tests, and helpers to drive it.

The stack runs as a subprocess, as a user runs it: its own ``--state-dir`` folder (embedded
PostgreSQL and Redis), a free ``--flower-port``, and a manifest folder holding one Schedule
of an example task every 5 seconds, so a run succeeds within seconds of Flower being up.
Its console log is collected line by line; tests wait on log lines and on Flower's API with
a deadline, never a sleep.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

BEATKEEPER = str(Path(sys.executable).with_name("beatkeeper"))
TASK = "examples.events.complete_ended"
QUICK = f"""\
apiVersion: beatkeeper.io/v1alpha1
kind: Schedule
metadata:
  name: quick
  namespace: default
spec:
  task: {TASK}
  interval: 5s
"""

#: A Schedule on a queue of its own: the stack's worker must consume it too.
QUEUED = """\
apiVersion: beatkeeper.io/v1alpha1
kind: Schedule
metadata:
  name: queued
  namespace: default
spec:
  task: examples.outlook.health_check
  interval: 5s
  queue: daily_outlook_queue
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def dev_env() -> dict[str, str]:
    """The test environment without settings that would point the stack at other servers."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BEATKEEPER_")}
    env.pop("XDG_RUNTIME_DIR", None)  # as in a container: the stack must not warn about it
    return env | {"NO_COLOR": "1", "COLUMNS": "400"}


class DevStack:
    """A running `beatkeeper dev`, its merged console log, and its Flower."""

    def __init__(self, *, state: Path, manifests: Path, port: int) -> None:
        self.state, self.manifests, self.port = state, manifests, port
        self.flower = f"http://127.0.0.1:{port}"
        self.lines: list[str] = []
        self.process: subprocess.Popen[str] | None = None
        self._changed = threading.Condition()
        self._ended = False

    def start(self, *, port: int | None = None) -> float:
        """Start the stack (on ``port``, if given); the seconds it reported to "Flower ready"."""
        if port is not None:
            self.port, self.flower = port, f"http://127.0.0.1:{port}"
        self.lines.clear()
        self._ended = False
        self.process = subprocess.Popen(
            [BEATKEEPER, "dev", "-f", str(self.manifests), "--state-dir", str(self.state),
             "--flower-port", str(self.port), "--concurrency", "1"],
            env=dev_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            stdin=subprocess.DEVNULL, bufsize=1,
        )  # fmt: skip
        threading.Thread(target=self._read, args=(self.process,), daemon=True).start()
        ready = self.wait_for(r"Flower ready at (\S+)/ \((\d+\.\d+)s\)", timeout=120)
        self.flower = ready.group(1)
        return float(ready.group(2))

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            with self._changed:
                self.lines.append(line.rstrip())
                self._changed.notify_all()
        with self._changed:
            self._ended = True
            self._changed.notify_all()

    def mark(self) -> int:
        """A position in the log: ``wait_for(..., after=mark)`` looks only at later lines."""
        return len(self.lines)

    def wait_for(self, pattern: str, *, timeout: float = 30, after: int = 0) -> re.Match[str]:
        compiled = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines[after:]:
                    if found := compiled.search(line):
                        return found
                after = len(self.lines)
                left = deadline - time.monotonic()
                if left <= 0 or self._ended:
                    tail = "\n".join(self.lines[-30:])
                    why = "before the stack exited" if self._ended else f"within {timeout:.0f}s"
                    pytest.fail(f"no log line matching {pattern!r} {why}:\n{tail}")
                self._changed.wait(min(left, 1.0))

    def authorization(self) -> str:
        """The ``Authorization`` header of the login the stack keeps in its state folder."""
        user_and_password = (self.state / "flower-login").read_text().strip()
        return "Basic " + base64.b64encode(user_and_password.encode()).decode()

    def flower_request(
        self, path: str, *, method: str = "GET", body: bytes | None = None, **headers: str
    ) -> tuple[int, dict[str, str], bytes]:
        """Flower's answer to one request: status, headers, body (an error status too)."""
        request = urllib.request.Request(
            f"{self.flower}{path}", data=body, method=method, headers=headers
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read()

    def succeeded(self, task: str = TASK) -> dict[str, Any]:
        """Flower's successful runs of ``task`` (empty while there are none)."""
        path = f"/api/tasks?taskname={task}&state=SUCCESS"
        try:
            status, _, body = self.flower_request(path, Authorization=self.authorization())
        except OSError:
            return {}
        tasks: dict[str, Any] = json.loads(body) if status == 200 else {}
        return tasks

    def interrupt(self, *, timeout: float = 60, number: int = signal.SIGINT) -> int:
        """Ctrl-C (or another signal): send it to the stack, wait for it to exit; its code."""
        assert self.process is not None
        self.process.send_signal(number)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            left = self.kill()
            tail = "\n".join(self.lines[-40:])
            pytest.fail(
                f"beatkeeper dev did not exit within {timeout:.0f}s of signal {number}; "
                f"still running "
                f"then: {left}; its last lines:\n{tail}"
            )

    def kill(self) -> list[str]:
        """SIGKILL the stack, its children and its embedded servers; what was still running."""
        assert self.process is not None
        try:
            family = psutil.Process(self.process.pid).children(recursive=True)
            family.append(psutil.Process(self.process.pid))
        except psutil.NoSuchProcess:
            family = []
        family += self.servers()
        running = []
        for process in family:
            with contextlib.suppress(psutil.NoSuchProcess):
                running.append(f"{process.pid} {' '.join(process.cmdline())[:120]}")
                process.kill()
        self.process.wait()
        return running

    def servers(self) -> list[psutil.Process]:
        """The embedded PostgreSQL and Redis (daemonised, so not the stack's descendants)."""
        found = []
        redis_port = re.search(r"Redis\s+redis://127\.0\.0\.1:(\d+)", "\n".join(self.lines))
        for process in psutil.process_iter(["cmdline"]):
            command = " ".join(process.info["cmdline"] or [])
            is_postgres = str(self.state) in command and "postgres" in command
            is_redis = (
                redis_port is not None
                and f":{redis_port.group(1)}" in command
                and "redis" in command
            )
            if is_postgres or is_redis:
                found.append(process)
        return found

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.interrupt()


@pytest.fixture(scope="session")
def dev_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    root = tmp_path_factory.mktemp("dev")
    manifests = root / "manifests"
    manifests.mkdir()
    (manifests / "quick.yaml").write_text(QUICK)
    (manifests / "queued.yaml").write_text(QUEUED)
    # The default state folder under ``root``: `beatkeeper` commands run there find the stack.
    stack = DevStack(state=root / ".beatkeeper" / "dev", manifests=manifests, port=free_port())
    started = time.monotonic()
    reported = stack.start()
    print(f"\nbeatkeeper dev: Flower ready after {reported:.1f}s (reported), "
          f"{time.monotonic() - started:.1f}s from spawning the process")  # fmt: skip
    try:
        yield stack
    finally:
        stack.stop()
