"""Real Beat and worker processes for the tests that cancel a running run (holds no tests).

``Stack`` starts ``celery -A beatkeeper_worker beat -S …DatabaseScheduler`` and ``celery -A
beatkeeper_worker worker`` (prefork) as a deployment does, the worker importing
``slow_tasks`` through ``BEATKEEPER_IMPORTS``. Its one task, ``slow.work``, writes
``<run id>.started`` (holding its pid) when its body begins and ``<run id>.finished`` only
if it runs to the end, so a test sees whether a cancel really stopped the process; with
``handle_term`` it turns ``SIGTERM`` into an exception, as a task that cleans up would.
``stop`` ends a process a test started (``SIGTERM``, then ``SIGKILL`` if it lingers); other
suites' stacks use it too.
``tests/`` is on ``sys.path`` for every suite, so both the integration and the operator
suites import it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
from waiting import wait_for

from beatkeeper.settings import Settings

__all__ = ["SLOW_TASK", "Stack", "process_gone", "stop"]

SLOW_TASK = "slow.work"
_SLOW_TASKS = """
import os
import signal
import time

from celery import shared_task


def interrupted(signum, frame):
    raise RuntimeError("interrupted by SIGTERM")


@shared_task(bind=True, name="slow.work")
def work(self, seconds, handle_term=False):
    if handle_term:  # a task that cleans up on SIGTERM, then fails
        signal.signal(signal.SIGTERM, interrupted)
    marker = os.path.join(os.environ["SLOW_MARKERS"], self.request.id)
    with open(marker + ".started", "w") as out:
        out.write(str(os.getpid()))
    time.sleep(seconds)
    with open(marker + ".finished", "w") as out:
        out.write("done")
    return seconds
"""


@dataclasses.dataclass
class Stack:
    """Beat and worker processes on one database schema and broker, logging to ``workdir``."""

    settings: Settings
    workdir: Path
    queue: str = dataclasses.field(default_factory=lambda: f"slow-{uuid.uuid4().hex[:8]}")

    def __post_init__(self) -> None:
        (self.workdir / "slow_tasks.py").write_text(_SLOW_TASKS)
        (self.workdir / "markers").mkdir(exist_ok=True)

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BEATKEEPER_")}
        env.update(
            BEATKEEPER_DATABASE_URL=self.settings.require_database_url(),
            BEATKEEPER_DB_SCHEMA=self.settings.db_schema,
            BEATKEEPER_BROKER_URL=self.settings.require_broker_url(),
            BEATKEEPER_LOG_FORMAT="console",
            BEATKEEPER_IMPORTS="slow_tasks",
            SLOW_MARKERS=str(self.workdir / "markers"),
            PYTHONPATH=os.pathsep.join([str(self.workdir), *sys.path]),
        )
        return env

    def worker(self, name: str = "worker") -> contextlib.AbstractContextManager[Any]:
        args = ["worker", "--pool", "prefork", "-c", "2", "-Q", self.queue, "-n", f"{name}@%h"]
        args += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
        return self._process(name, args, ready="ready.")

    def beat(self, name: str = "beat") -> contextlib.AbstractContextManager[Any]:
        args = ["beat", "-S", "beatkeeper_worker.beat:DatabaseScheduler"]
        return self._process(name, [*args, "--schedule", str(self.workdir / name)])

    def log(self, name: str) -> str:
        return (self.workdir / f"{name}.log").read_text(errors="replace")

    def started_pid(self, run_id: uuid.UUID) -> int | None:
        marker = self.workdir / "markers" / f"{run_id}.started"
        return int(marker.read_text()) if marker.exists() and marker.read_text() else None

    def finished(self, run_id: uuid.UUID) -> bool:
        return (self.workdir / "markers" / f"{run_id}.finished").exists()

    @contextlib.contextmanager
    def _process(self, name: str, args: list[str], *, ready: str = "") -> Iterator[Any]:
        log = self.workdir / f"{name}.log"
        command = [sys.executable, "-m", "celery", "-A", "beatkeeper_worker", *args, "-l", "INFO"]
        with log.open("w") as out:
            process = subprocess.Popen(
                command, env=self.env(), cwd=self.workdir, stdout=out, stderr=subprocess.STDOUT
            )
        try:
            if ready:
                wait_for(lambda: _started(process, log, ready), timeout=60, what=f"{name} ready")
            yield process
        finally:
            stop(process, timeout=20)


def stop(process: subprocess.Popen[Any], *, timeout: float) -> None:
    """``SIGTERM`` ``process``, wait ``timeout`` seconds for it to exit, then ``SIGKILL`` it.

    A Celery process shuts down cleanly on ``SIGTERM``; the kill only keeps a stuck one from
    outliving the test.
    """
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _started(process: subprocess.Popen[bytes], log: Path, ready: str) -> bool:
    if process.poll() is not None:
        raise AssertionError(f"{log.name}: exited {process.returncode}:\n{log.read_text()}")
    return ready in log.read_text(errors="replace")


def process_gone(pid: int) -> bool:
    """Whether process ``pid`` has ended (a zombie not yet reaped has ended too)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
