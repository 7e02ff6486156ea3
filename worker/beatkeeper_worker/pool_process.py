"""The pool process that runs tasks: who it is to the runs table, and how it retries the database.

One ``PoolProcess`` per forked pool process, built after the fork (a connection inherited from
the parent must never be used). Its identity, the ``Owner`` of every run it claims, is the
worker's name, its pid and a random token that also names its database sessions, so another
process can tell whether it still lives. It holds the process's database sessions
(``beatkeeper.store.sessions.PoolSessions``).

This module must not talk to Celery nor decide what to record: ``tracking`` and ``ledger`` do.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from collections.abc import Callable
from typing import ClassVar, TypeVar

from beatkeeper.decisions.ownership import Owner
from beatkeeper.settings import Settings
from beatkeeper.store import DatabaseUnavailable
from beatkeeper.store.held_connection import HeldConnection
from beatkeeper.store.sessions import PoolSessions

__all__ = ["FINISH_RETRY_DELAYS", "START_RETRY_DELAYS", "PoolProcess", "line"]

logger = logging.getLogger("beatkeeper.worker")

#: Waits between tries of the claim; then the message is requeued.
START_RETRY_DELAYS = (0.1, 0.3, 1.0, 2.0)
#: Waits between tries of a database step after the body ran; then the outcome is given up
#: with an error line (the body never reruns for want of a record).
FINISH_RETRY_DELAYS = (0.1, 0.3, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0)

_CREATING = threading.Lock()
_T = TypeVar("_T")


def line(error: DatabaseUnavailable) -> str:
    """What made the database unavailable, on one line (its URL without the password)."""
    return " ".join(str(error).split())


class PoolProcess:
    """This process's identity as a run owner, and its database sessions."""

    #: Threads running tasks at once in each pool process: 1 under prefork.
    threads: ClassVar[int] = 1
    #: Set when a worker of a tracked app starts (not merely imported by some other app).
    tracking: ClassVar[bool] = False
    _instance: ClassVar[PoolProcess | None] = None

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.token = secrets.token_hex(6)
        self.sessions = PoolSessions(Settings.from_env(), token=self.token, threads=self.threads)

    @classmethod
    def current(cls) -> PoolProcess:
        """Built after the fork: a connection inherited from a parent must never be used."""
        instance = cls._instance
        if instance is None or instance.pid != os.getpid():
            with _CREATING:  # thread pools: every thread must share the one identity
                if cls._instance is None or cls._instance.pid != os.getpid():
                    cls._instance = PoolProcess()
                instance = cls._instance
        return instance

    def owner(self, hostname: str | None) -> Owner:
        """The owner of the runs this process claims for worker ``hostname``."""
        return Owner(hostname or "unknown", self.pid, self.token)

    def discard(self, held: HeldConnection | None = None) -> None:
        """Drop ``held`` (default: this thread's) after an error, whichever thread held it;
        the next step opens a fresh one. The one place a pool process gives up a connection."""
        self.sessions.discard(held)

    def retrying(self, delays: tuple[float, ...], step: Callable[[], _T]) -> _T:
        """Run ``step``; while the database is unavailable, drop this thread's held
        connection and retry. Raises the last ``DatabaseUnavailable`` once ``delays`` run out."""
        for delay in delays:
            try:
                return step()
            except DatabaseUnavailable as error:
                self.discard()
                logger.warning(
                    "database unavailable, trying again in %.1fs: %s", delay, line(error)
                )
                time.sleep(delay)
        try:
            return step()
        except DatabaseUnavailable:
            self.discard()
            raise
