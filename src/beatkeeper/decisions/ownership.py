"""Whether a delivered message may run its run: the row is believed, never the message.

A message names its run by task id and says which task and schedule it is for; anyone who
can write to the broker can forge one, and a stale or misrouted copy can name the right run
with the wrong task. ``mismatch`` says why a message is not its run's. A message whose claim
found the run already ``running`` may take it over only from an owner that is gone (the
process died and the broker handed the message back); ``refusal`` says why it may not from
the row alone, ``take_over`` decides once the caller knows whether the owner still lives. A
run whose body killed ``MAX_WORKER_LOSSES`` processes is failed instead of handed to the next.

Pure: no SQL, no Celery, no I/O and no clock. The worker reads the row and the owner's
liveness through the store and records the answer there.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import datetime

from beatkeeper.decisions.attempts import worker_lost
from beatkeeper.states import RunState

__all__ = [
    "MAX_WORKER_LOSSES",
    "GiveUp",
    "Message",
    "Owner",
    "RecordedRun",
    "Refusal",
    "Refused",
    "TakeOver",
    "mismatch",
    "refusal",
    "take_over",
]

#: A run whose body killed this many processes (segfault, OOM killer, a hard exit) is failed
#: instead of handed to the next one, which it would kill in turn.
MAX_WORKER_LOSSES = 3


@dataclass(frozen=True)
class Owner:
    """The pool process running a run: its worker's name, its pid and its session token."""

    worker: str
    pid: int
    session: str  # random per process; its database sessions carry it in application_name

    def described(self) -> str:
        return f"{self.worker} (pid {self.pid}, session {self.session})"


@dataclass(frozen=True)
class Message:
    """What a message says about its run."""

    run_id: uuid.UUID
    task: str
    schedule_id: uuid.UUID
    schedule: str  # namespace/name

    def described(self) -> str:
        return f"message for run {self.run_id} (task {self.task}, schedule {self.schedule})"


@dataclass(frozen=True)
class RecordedRun:
    """The run as its row records it, with its schedule's ``namespace/name``."""

    state: str
    task: str
    schedule_id: uuid.UUID
    schedule: str
    owner: Owner | None  # None: nobody runs it (never started, or handed back)
    worker_losses: int
    due_at: datetime
    early: bool  # waiting to be published, and not due yet (by the database's clock)

    def owner_described(self) -> str:
        return "nobody" if self.owner is None else self.owner.described()


def mismatch(message: Message, row: RecordedRun) -> str | None:
    """Why ``message`` is not a message of ``row``; ``None`` when it is."""
    if message.task != row.task:
        return f"the run is task {row.task}"
    if message.schedule_id != row.schedule_id or message.schedule != row.schedule:
        return f"the run belongs to schedule {row.schedule} ({row.schedule_id})"
    if row.early:
        return f"the run is {row.state}, due at {row.due_at.isoformat()}: not published yet"
    return None


class Refusal(enum.Enum):
    """Why a delivery does not run its run."""

    MISSING = "no such run"
    FOREIGN = "not the run's message"
    NOT_RUNNING = "the run is not running"
    OWNED = "a live process runs it"


@dataclass(frozen=True)
class Refused:
    why: Refusal
    detail: str


@dataclass(frozen=True)
class TakeOver:
    """Run it here: the owner is gone. ``losses`` counts the processes lost so far."""

    losses: int


@dataclass(frozen=True)
class GiveUp:
    """Fail the run unrun: its body killed ``losses`` processes."""

    losses: int
    error: str


def refusal(message: Message, row: RecordedRun | None, *, me: Owner) -> Refused | None:
    """Why ``message`` must not take its run over, from the row alone; ``None``: it may,
    once the owner is known to be gone (``take_over``)."""
    if row is None:
        return Refused(Refusal.MISSING, "does not exist")
    wrong = mismatch(message, row)
    if wrong is not None:
        return Refused(Refusal.FOREIGN, wrong)
    if row.state != RunState.RUNNING:
        return Refused(Refusal.NOT_RUNNING, f"is {row.state}")
    if row.owner == me:
        return Refused(Refusal.OWNED, f"is running on {me.described()}")
    return None


def take_over(row: RecordedRun, *, owner_alive: bool) -> Refused | TakeOver | GiveUp:
    """A ``running`` run whose message came again: leave it, take it over, or give up on it."""
    if owner_alive:
        return Refused(Refusal.OWNED, f"is running on {row.owner_described()}")
    losses = row.worker_losses + (row.owner is not None)  # None: handed back, not lost
    if losses >= MAX_WORKER_LOSSES:
        return GiveUp(losses, worker_lost(losses, row.owner_described()))
    return TakeOver(losses)
