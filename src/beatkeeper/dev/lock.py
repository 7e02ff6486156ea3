"""One `beatkeeper dev` per state folder: an exclusive lock held for the stack's life.

Two stacks on one folder would share its PostgreSQL data directory, its Redis files, its
``servers.env`` and its record of owned schedules: the second would delete the first one's
schedules and, on exit, stop its servers. An ``flock`` on ``state/dev.lock`` prevents it;
the kernel drops the lock when the process ends however it ends, so a crash leaves no stale
lock behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

LOCK_FILE = "dev.lock"


class StateInUseError(RuntimeError):
    """Another `beatkeeper dev` holds this state folder."""


@contextlib.contextmanager
def hold(state: Path) -> Iterator[None]:
    """Hold the state folder's lock for the block; ``StateInUseError`` when another stack has it."""
    state.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(state / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StateInUseError(_in_use(state, descriptor)) from None
        os.ftruncate(descriptor, 0)
        os.write(descriptor, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(descriptor)


def _in_use(state: Path, descriptor: int) -> str:
    holder = os.read(descriptor, 32).decode(errors="replace").strip()
    by = f" (pid {holder})" if holder.isdigit() else ""
    return (
        f"{state} is in use by another beatkeeper dev{by}: to run a second stack, give it "
        "its own folder and port, e.g. --state-dir .beatkeeper/dev2 --flower-port 5556"
    )
