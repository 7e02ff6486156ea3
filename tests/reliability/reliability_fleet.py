"""Beat replicas and Celery workers as real processes, which the reliability suite SIGKILLs.

A ``Fleet`` runs ``celery beat`` replicas of beatkeeper's scheduler and ``celery worker``
processes of ``reliability_app`` (prefork, run tracking installed), each logging to its own
file in the scenario's folder. ``kill_one`` SIGKILLs one process and restarts what it
killed: a Beat replica, a worker's main process (its pool processes die with it) or one
pool process (the pool forks a new one itself). Every kill is kept as a ``Kill``, so an
execution cut short, or one whose outcome never got recorded, can be traced to it. A member
that exits by itself is started again, as its Deployment would, and kept in ``restarted``.

Victims follow a seeded random generator: the kinds come in rounds (each kind once per
round, in a random order) so that every kind is hit, and the member of a kind is random.
This module judges nothing; ``reliability_harness`` does.
"""

from __future__ import annotations

import collections
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from waiting import wait_for

SCHEDULER = "beatkeeper_worker.beat:DatabaseScheduler"
QUEUE = "reliability"
HERE = Path(__file__).parent
KINDS = ("beat", "worker", "pool process")
CONCURRENCY = "3"  # pool processes per worker
_RECEIVED = re.compile(r"Task reliability\.record\[([0-9a-f-]{36})\] received")


@dataclass(frozen=True)
class Kill:
    """One SIGKILL: when (epoch seconds), of what kind, and every process it ended."""

    at: float
    kind: str
    member: str
    pids: tuple[int, ...]


@dataclass
class Fleet:
    """The scenario's Beat replicas and workers, by member name (``beat-0``, ``worker-1``)."""

    env: dict[str, str]
    folder: Path
    seed: int
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    kills: list[Kill] = field(default_factory=list)
    #: Members that exited by themselves and were started again, as a Deployment would,
    #: with their exit codes.
    restarted: list[tuple[str, int]] = field(default_factory=list)
    _kinds: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self._lock = threading.Lock()  # kill_one and the supervisor both restart members
        self._stopping = threading.Event()
        self._supervisor = threading.Thread(target=self._supervise, daemon=True)

    def _supervise(self) -> None:
        while not self._stopping.wait(0.5):
            with self._lock:
                for member, process in list(self.processes.items()):
                    if process.poll() is not None:
                        self.restarted.append((member, process.returncode))
                        self._start(member)

    def start(self, *, beats: int, workers: int) -> None:
        """Start every member; return once each worker is ready to consume."""
        for n in range(workers):
            self._start(f"worker-{n}")
        for n in range(beats):
            self._start(f"beat-{n}")
        for n in range(workers):
            log = self.log(f"worker-{n}")
            wait_for(lambda log=log: "ready." in _text(log), timeout=60, what=f"{log.name}: ready")
        self._supervisor.start()

    def _start(self, member: str) -> None:
        if member.startswith("beat"):
            args = ["-A", "beatkeeper_worker", "beat", "-S", SCHEDULER, "-l", "INFO"]
            args += ["--schedule", str(self.folder / f"{member}.state")]
        else:
            args = ["-A", "reliability_app", "worker", "-Q", QUEUE, "-c", CONCURRENCY, "-l", "INFO"]
            args += ["-n", f"{member}@%h", "--without-gossip", "--without-mingle"]
            args += ["--without-heartbeat"]
        env = {**self.env, "PYTHONPATH": str(HERE)}  # where ``reliability_app`` lives
        with self.log(member).open("ab") as log:
            self.processes[member] = subprocess.Popen(
                [sys.executable, "-m", "celery", *args],
                env=env,
                cwd=self.folder,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def log(self, member: str) -> Path:
        return self.folder / f"{member}.log"

    def kill_one(self) -> Kill:
        """SIGKILL one process of the next kind in the round and restart what needs it."""
        with self._lock:
            return self._kill_one()

    def _kill_one(self) -> Kill:
        if not self._kinds:
            self._kinds = self.rng.sample(KINDS, len(KINDS))
        kind = self._kinds.pop()
        prefix = "beat" if kind == "beat" else "worker"
        member = self.rng.choice(sorted(m for m in self.processes if m.startswith(prefix)))
        process = self.processes[member]
        pool = sorted(child.pid for child in _children(process.pid))
        if kind == "pool process" and pool:
            pids: tuple[int, ...] = (self.rng.choice(pool),)
            at = time.time()
            os.kill(pids[0], signal.SIGKILL)  # the pool forks a replacement by itself
        else:  # a worker still starting has no pool yet: then its main process it is
            kind = "beat" if prefix == "beat" else "worker"
            pids = (process.pid, *pool)
            process.kill()
            process.wait()
            _reap(pool)
            at = time.time()  # once every process is gone: a pool process may outlive its parent
            self._start(member)
        kill = Kill(at, kind, member, pids)
        self.kills.append(kill)
        return kill

    def kill_counts(self) -> dict[str, int]:
        counted = collections.Counter(kill.kind for kill in self.kills)
        return {kind: counted[kind] for kind in KINDS}

    def crashed(self) -> dict[str, int]:
        """Members that exited without being killed (and were restarted), by exit code."""
        with self._lock:
            return dict(self.restarted)

    def stop(self) -> None:
        self._stopping.set()
        if self._supervisor.is_alive():
            self._supervisor.join(timeout=5)
        for process in self.processes.values():
            process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def deliveries(self) -> collections.Counter[str]:
        """How many times workers received each run's message (from their logs)."""
        received: collections.Counter[str] = collections.Counter()
        for log in self.folder.glob("worker-*.log"):
            received.update(_RECEIVED.findall(_text(log)))
        return received

    def count_in_worker_logs(self, pattern: str) -> int:
        return sum(len(re.findall(pattern, _text(log))) for log in self.folder.glob("worker-*.log"))

    def logs(self, tail: int = 3000) -> str:
        return "\n".join(
            f"--- {log.name}\n{_text(log)[-tail:]}" for log in sorted(self.folder.glob("*.log"))
        )


def _reap(pids: list[int]) -> None:
    """Wait for pool processes to die with their parent (prefork sets their PDEATHSIG)."""
    wait_for(
        lambda: not any(_running(pid) for pid in pids),
        timeout=10,
        what=f"pool processes {pids} to die with their worker",
    )


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _children(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children()
    except psutil.NoSuchProcess:
        return []


def _text(log: Path) -> str:
    return log.read_text(errors="replace") if log.exists() else ""
