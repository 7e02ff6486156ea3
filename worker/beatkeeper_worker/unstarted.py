"""Messages a pool process never runs: what the worker's main process records for them.

Celery refuses some messages in the main process before any pool process sees them: an
unknown task name (``task_unknown``), a message it will not decode, such as pickle
(``task_rejected``); and a hard time limit kills the pool process before the body's wrapper
can record anything (``task_failure``). Such a message fails its run only when the message
is one of that run's (``matching``) and nobody else is running it: a duplicate that reaches a
worker lacking the task must not fail a run that a live process elsewhere is running. Every
refusal is one truthful line: "failed" only when the run was failed.

Each write is one transaction on a short-lived connection (none kept across the fork).
"""

from __future__ import annotations

import functools
import logging
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from celery.exceptions import TimeLimitExceeded
from sqlalchemy import Connection, Engine
from sqlalchemy.pool import NullPool

from beatkeeper.settings import Settings
from beatkeeper.states import RunState
from beatkeeper.store.engine import make_engine
from beatkeeper.store.runs import transition
from beatkeeper_worker import ledger, matching, ownership, retries
from beatkeeper_worker.ledger import START_RETRY_DELAYS, line

__all__ = [
    "describe_error",
    "fail_if_ours",
    "on_hard_time_limit",
    "on_invalid_task",
    "on_unknown_task",
]

logger = logging.getLogger("beatkeeper.worker")


def describe_error(error: BaseException) -> str:
    """``ExceptionType: message``, as the runs table records errors."""
    message = str(error)
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def on_unknown_task(sender: Any, message: Any, name: str, **_: Any) -> None:
    error = f"NotRegistered: no task named {name!r} on worker {sender.hostname}"
    _fail_unstarted(message.headers or {}, error, worker=sender.hostname)


def on_invalid_task(sender: Any, message: Any, exc: BaseException | None, **_: Any) -> None:
    if exc is not None:
        _fail_unstarted(message.headers or {}, describe_error(exc), worker=sender.hostname)


def on_hard_time_limit(task_id: str, exception: BaseException, **_: Any) -> None:
    """The pool killed the process: its wrapper never got to record the outcome."""
    if isinstance(exception, TimeLimitExceeded):
        _fail_main(uuid.UUID(task_id), describe_error(exception))


def _fail_unstarted(headers: dict[str, Any], error: str, *, worker: str) -> None:
    """A message this worker cannot run at all: fail its run, if that run is the message's
    and nobody else is running it (a duplicate may reach a worker lacking the task)."""
    if headers.get("beatkeeper_schedule_id") is None:
        return
    try:
        message = matching.Message(
            run_id=uuid.UUID(str(headers["id"])),
            task=str(headers.get("task")),
            schedule_id=uuid.UUID(str(headers["beatkeeper_schedule_id"])),
            schedule=str(headers.get("beatkeeper_schedule")),
        )
    except (KeyError, ValueError):
        logger.error("message refused (%s); its run headers are malformed: %r", error, headers)  # noqa: TRY400
        return
    _on_main_connection(
        lambda db: fail_if_ours(db, message, error, worker=worker),
        lost=f"{message.described()} refused ({error}), not recorded",
    )


def fail_if_ours(db: Connection, message: matching.Message, error: str, *, worker: str) -> None:
    """Fail ``message``'s run with ``error``, if the run is the message's and nobody else is
    running it; otherwise log why and leave the run as it is."""
    refused = f"{message.described()} refused ({error})"
    row = matching.read_run(db, message.run_id, for_update=True)
    if row is None:
        logger.error("%s: no such run", refused)
        return
    wrong = matching.mismatch(message, row)
    if wrong is not None:
        logger.error("%s: %s; the run is left as it is", refused, wrong)
        return
    if row.state == RunState.RUNNING and ownership.still_owned(db, row.worker, redelivered=False):
        logger.error("%s: run %s of %s is running on %s", refused, *_of(message), row.worker)
        return
    now = datetime.now(UTC)
    if not transition(db, message.run_id, RunState.FAILED, now=now, error=error, worker=worker):
        logger.error("%s: the run is %s, left as it is", refused, row.state)
        return
    logger.error("run %s of %s failed: %s", *_of(message), error)
    retries.settle_failure(db, message.run_id, error=error, now=now)


def _of(message: matching.Message) -> tuple[uuid.UUID, str]:
    return message.run_id, message.schedule


def _fail_main(run_id: uuid.UUID, error: str) -> None:
    def fail(db: Connection) -> None:
        now = datetime.now(UTC)
        if transition(db, run_id, RunState.FAILED, now=now, error=error):
            retries.settle_failure(db, run_id, error=error, now=now)

    _on_main_connection(fail, lost=f"run {run_id} failed ({error}), not recorded")


def _on_main_connection(step: Callable[[Connection], None], *, lost: str) -> None:
    """One transaction from the main process: a short-lived connection, none kept to fork."""
    for delay in (*START_RETRY_DELAYS, None):
        try:
            with _main_engine().begin() as db:
                step(db)
            return
        except ledger.DOWN as down:
            if delay is None:
                logger.error("%s: %s", lost, line(down))  # noqa: TRY400
                return
            time.sleep(delay)


@functools.cache
def _main_engine() -> Engine:
    return make_engine(
        Settings.from_env(), application_name="beatkeeper-worker-main", poolclass=NullPool
    )
