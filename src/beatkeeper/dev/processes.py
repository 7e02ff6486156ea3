"""Child processes of `beatkeeper dev` and their merged, prefixed console log.

Each child's stdout and stderr are read line by line in a thread and printed with the
child's name in front, so one terminal shows Beat, the worker and Flower in order. Stopping
sends SIGTERM (Celery's warm shutdown: running tasks finish, unacknowledged messages stay
in Redis), waits, and kills only what did not stop.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

STOP_SECONDS = 20.0
_COLOURS = {"beat": "\033[35m", "worker": "\033[36m", "flower": "\033[33m"}


@dataclass
class Child:
    name: str
    process: subprocess.Popen[str]
    quiet: re.Pattern[str] | None = None
    reader: threading.Thread = field(init=False)


class Supervisor:
    """Starts named commands, prints their output, and stops them all."""

    def __init__(self, *, write: Callable[[str], None] | None = None) -> None:
        self._write = write or _print
        self._children: list[Child] = []
        self._lock = threading.Lock()

    def start(
        self,
        name: str,
        command: Sequence[str],
        env: Mapping[str, str],
        *,
        quiet: re.Pattern[str] | None = None,
    ) -> Child:
        """Start ``command``; its lines matching ``quiet`` are not shown."""
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
            list(command),
            env=dict(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            bufsize=1,
            start_new_session=True,  # Ctrl-C reaches us only; we stop children in order
        )
        child = Child(name, process, quiet)
        child.reader = threading.Thread(target=self._pump, args=(child,), daemon=True)
        child.reader.start()
        self._children.append(child)
        return child

    def exited(self) -> list[Child]:
        """Children that stopped on their own."""
        return [c for c in self._children if c.process.poll() is not None]

    def stop(self) -> None:
        """SIGTERM every child (newest first), then SIGKILL what outlives the grace period.

        The grace period is one for all children, not one each: stopping never takes much
        longer than ``STOP_SECONDS`` however many children hang.
        """
        for child in reversed(self._children):
            with contextlib.suppress(ProcessLookupError):
                child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_SECONDS
        for child in reversed(self._children):
            try:
                child.process.wait(timeout=max(deadline - time.monotonic(), 0.0))
            except subprocess.TimeoutExpired:
                self._write(f"{child.name} did not stop within {STOP_SECONDS:.0f}s: killed")
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.process.pid, signal.SIGKILL)
                child.process.wait()
            child.reader.join(timeout=2)

    def _pump(self, child: Child) -> None:
        assert child.process.stdout is not None
        prefix = _prefix(child.name)
        for line in child.process.stdout:
            if child.quiet is not None and child.quiet.search(line):
                continue
            with self._lock:
                self._write(f"{prefix}{line.rstrip()}")


def _prefix(name: str) -> str:
    label = f"{name:<7}|"
    if sys.stdout.isatty() and name in _COLOURS:
        return f"{_COLOURS[name]}{label}\033[0m "
    return f"{label} "


def _print(line: str) -> None:
    print(line, flush=True)  # noqa: T201 - this is the dev console
