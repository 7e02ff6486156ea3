"""What a pool process writes to the runs table on every run: the claim and the outcome.

Each pool process has its own engine, opened after the fork, whose PostgreSQL
``application_name`` carries a random per-process token; a run's ``worker`` column names the
host, pid and that token (``Process.owner``; take-overs: ``ownership``). Each thread holds
one ``wire.Wire``.

The two writes every run makes, and what each costs:

- **The claim** (``enqueued → running``) is waited for: the body must not start unless it
  succeeded (invariant 3). It commits asynchronously (``synchronous_commit = off`` for that
  transaction only), which saves the WAL flush, the larger half of its round trip. The only
  thing that can undo it is a crash of the PostgreSQL server within a fraction of a second;
  the run is then ``enqueued`` again, and ``record_again`` claims and finishes it in one
  transaction when the outcome arrives.
- **The outcome** of a success (``running → succeeded``, with the reset of the schedule's
  failure count) commits durably but is only *sent* before the task returns, and its answer
  is read when the thread's wire is next used (``settle``, before the next claim, and when the
  process exits). The statement has left the process before Celery acknowledges the message,
  so a process killed after the body still has its outcome recorded, and a finished run is
  never executed again. If the connection broke before the answer came, the outcome is
  written again on a fresh connection, which is harmless if it had arrived.

Failures, releases and take-overs are rarer; they run as ordinary transactions on pooled
connections. This module must not talk to Celery: ``tracking`` does.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar

import psycopg
from sqlalchemy import Connection, exc, select

from beatkeeper.observability import metrics
from beatkeeper.settings import Settings
from beatkeeper.states import RunState
from beatkeeper.store.engine import DatabaseUnavailable, make_engine
from beatkeeper.store.models import runs
from beatkeeper.store.runs import transition
from beatkeeper_worker import ownership, retries
from beatkeeper_worker.matching import Message
from beatkeeper_worker.ownership import session_name
from beatkeeper_worker.statements import statements_for
from beatkeeper_worker.wire import Wire

__all__ = [
    "DOWN",
    "FINISH_RETRY_DELAYS",
    "START_RETRY_DELAYS",
    "DatabaseDown",
    "Delivery",
    "Process",
    "at",
    "claim",
    "line",
    "settle",
    "succeeded",
]

logger = logging.getLogger("beatkeeper.worker")

#: Waits between tries of the claim; then the message is requeued.
START_RETRY_DELAYS = (0.1, 0.3, 1.0, 2.0)
#: Waits between tries of a database step after the body ran; then the outcome is given up
#: with an error line (the body never reruns for want of a record).
FINISH_RETRY_DELAYS = (0.1, 0.3, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0)
#: How long an exiting process waits for the answer to the outcome it sent last.
EXIT_ANSWER_SECONDS = 5.0
DOWN = (DatabaseUnavailable, exc.OperationalError, exc.InterfaceError, psycopg.OperationalError)
"""What an unreachable database raises, whichever layer noticed."""

_CREATING = threading.Lock()
_T = TypeVar("_T")


@dataclass(frozen=True)
class Delivery:
    """One message for a run, as the task's request carried it."""

    run_id: uuid.UUID
    schedule: str
    schedule_id: uuid.UUID
    hostname: str | None
    redelivered: bool
    planned_at: str | None = None
    attempt: int | None = None
    task: str = field(kw_only=True)  # the task name the message carries

    def message(self) -> Message:
        return Message(self.run_id, self.task, self.schedule_id, self.schedule)

    def claim_values(self) -> dict[str, object]:
        """What the claim statement checks against the row (see ``matching``)."""
        namespace, _, name = self.schedule.partition("/")
        return {
            "task": self.task,
            "schedule_id": self.schedule_id,
            "namespace": namespace,
            "name": name,
        }


class Process:
    """This process's engine, its threads' wires, and the owner name of its runs."""

    threads = 1
    wanted = False  # set when a worker of a tracked app starts
    _instance: Process | None = None

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.token = secrets.token_hex(6)
        self.engine = make_engine(
            Settings.from_env(),
            application_name=session_name(self.token),
            pool_size=self.threads + 1,  # one held per thread, one for the rarer steps
            max_overflow=self.threads,
        )
        self.statements = statements_for(self.engine.dialect)
        self._held = threading.local()
        self._wires: list[Wire] = []

    @classmethod
    def current(cls) -> Process:
        """Built after the fork: a connection inherited from a parent must never be used."""
        instance = cls._instance
        if instance is None or instance.pid != os.getpid():
            with _CREATING:  # thread pools: every thread must share the one identity
                if cls._instance is None or cls._instance.pid != os.getpid():
                    cls._instance = Process()
                instance = cls._instance
        return instance

    def owner(self, hostname: str | None) -> str:
        return f"{hostname or 'unknown'} (pid {self.pid}, session {self.token})"

    def held(self) -> Wire | None:
        """This thread's wire, if it has one open."""
        wire: Wire | None = getattr(self._held, "wire", None)
        return wire

    def wire(self) -> Wire:
        """This thread's held connection (no pool checkout, no ping per run)."""
        wire = self.held()
        if wire is None:
            wire = Wire(self.engine.connect())
            self._held.wire = wire
            with _CREATING:
                self._wires.append(wire)
        return wire

    def drop(self) -> None:
        """Forget this thread's wire after an error: the next step opens a fresh one."""
        wire = self.held()
        self._held.wire = None
        if wire is not None:
            with _CREATING:
                self._wires.remove(wire)
            with contextlib.suppress(Exception):  # it is broken already; drop it whatever
                wire.close()

    def retrying(self, delays: tuple[float, ...], step: Callable[[], _T]) -> _T:
        """Run ``step``; while the database is unreachable, drop the wire and retry."""
        for delay in delays:
            try:
                return step()
            except DOWN as error:
                self.drop()
                logger.warning(
                    "database unavailable, trying again in %.1fs: %s", delay, line(error)
                )
                time.sleep(delay)
        try:
            return step()
        except DOWN as error:
            self.drop()
            raise DatabaseDown(line(error)) from None

    def settle_all(self) -> None:
        """Read every thread's pending answers as the process exits: briefly, and without
        the retries of a running process (the database may be going away with it)."""
        with _CREATING:
            wires = list(self._wires)
        for wire in wires:
            _settle_wire(self, wire, delays=(), timeout=EXIT_ANSWER_SECONDS)

    def discard(self, wire: Wire) -> None:
        """Close ``wire`` after an error, whichever thread held it."""
        if self.held() is wire:
            self._held.wire = None
        with _CREATING:
            if wire in self._wires:
                self._wires.remove(wire)
        with contextlib.suppress(Exception):  # it is broken already; drop it whatever
            wire.close()


class DatabaseDown(Exception):  # noqa: N818 (a state, like TimeoutError)
    pass


def line(error: BaseException) -> str:
    original = getattr(error, "orig", None) or error
    return " ".join(str(original).split())


# -- the claim and the outcome -----------------------------------------------------------


def claim(process: Process, delivery: Delivery, me: str) -> bool:
    """Move the run to ``running`` for ``me``; ``False``: it must not run here (see logs).

    The claim moves the run only when the message's task and schedule are the row's;
    otherwise ``take_over`` finds out why and logs it, touching nothing.
    """
    settle(process)
    now = datetime.now(UTC)
    values = {"id": delivery.run_id, "now": now, "worker": me, **delivery.claim_values()}
    if process.wire().execute(process.statements.claim, values):
        return True
    with process.engine.connect() as db:
        taken = ownership.take_over(db, delivery, me, now=datetime.now(UTC))
        db.commit()
    return taken


@dataclass(frozen=True)
class _Outcome:
    delivery: Delivery
    owner: str
    summary: str


def succeeded(process: Process, delivery: Delivery, me: str, summary: str) -> None:
    """Send the run's success on this thread's wire; its answer is read by ``settle``.

    Should the send itself fail, the success is written in a transaction of its own, with
    retries, before the task returns.
    """
    outcome = _Outcome(delivery, me, summary)
    values = {"id": delivery.run_id, "now": datetime.now(UTC), "result": summary}
    values["schedule_id"] = delivery.schedule_id
    try:
        process.wire().send(process.statements.success, values, tag=outcome)
    except DOWN as error:
        process.drop()
        logger.warning("database unavailable, recording the success again: %s", line(error))
        _record_again(process, outcome, FINISH_RETRY_DELAYS)
    metrics.RUNS_FINISHED.labels(RunState.SUCCEEDED.value).inc()


def settle(process: Process) -> None:
    """Read the answers this thread's wire is owed; outcomes it lost are written again."""
    wire = process.held()
    if wire is not None and wire.pending:
        _settle_wire(process, wire)


def _settle_wire(
    process: Process,
    wire: Wire,
    *,
    delays: tuple[float, ...] = FINISH_RETRY_DELAYS,
    timeout: float | None = None,
) -> None:
    try:
        answers = wire.collect(timeout=timeout)
    except DOWN as error:
        lost = wire.unanswered()
        process.discard(wire)
        logger.warning(
            "database connection lost with %d outcome(s) unconfirmed: %s", len(lost), line(error)
        )
        for outcome in lost:
            _record_again(process, outcome, delays)
        return
    for outcome, rows in answers:
        if not rows:
            logger.warning(
                "run %s of %s succeeded but was no longer running", *at(outcome.delivery)
            )


def _record_again(process: Process, outcome: _Outcome, delays: tuple[float, ...]) -> None:
    def attempt() -> None:
        with process.engine.begin() as db:
            record_again(
                db, outcome.delivery, outcome.owner, outcome.summary, now=datetime.now(UTC)
            )

    try:
        process.retrying(delays, attempt)
    except DatabaseDown as down:
        logger.error("run %s of %s succeeded, not recorded: %s", *at(outcome.delivery), down)  # noqa: TRY400


def record_again(
    db: Connection, delivery: Delivery, me: str, summary: str, *, now: datetime
) -> None:
    """A success whose answer was lost: record it unless it arrived (or the claim did not)."""
    state = db.execute(
        select(runs.c.state).where(runs.c.id == delivery.run_id).with_for_update()
    ).scalar_one_or_none()
    if state == RunState.ENQUEUED:  # the server restarted and forgot the asynchronous claim
        transition(db, delivery.run_id, RunState.RUNNING, now=now, worker=me)
    elif state != RunState.RUNNING:
        return  # recorded already (the answer was lost, not the statement)
    if transition(db, delivery.run_id, RunState.SUCCEEDED, now=now, result=summary):
        db.execute(retries.RESET_FAILURES, {"schedule_id": delivery.schedule_id})


def at(delivery: Delivery) -> tuple[uuid.UUID, str]:
    return delivery.run_id, delivery.schedule
