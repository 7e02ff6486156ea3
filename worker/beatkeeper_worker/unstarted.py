"""Messages a pool process never runs: what the worker's main process records for them.

Celery refuses some messages in the main process before any pool process sees them: an
unknown task name (``task_unknown``), a message it will not decode, such as pickle
(``task_rejected``); and a hard time limit kills the pool process before the body's wrapper
can record anything (``task_failure``). Such a message fails its run only when the message
is one of that run's (``beatkeeper.decisions.ownership.mismatch``) and nobody else is
running it: a duplicate that reaches a worker lacking the task must not fail a run that a
live process elsewhere is running. Every refusal is one truthful line: "failed" only when
the run was failed.

Each write is one transaction on a short-lived connection (none kept across the fork). This
module must not run a task's body.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from celery.exceptions import TimeLimitExceeded

from beatkeeper.decisions.ownership import Message, mismatch
from beatkeeper.states import RunState
from beatkeeper.store import DatabaseUnavailable, recording
from beatkeeper.store.sessions import main_process_transaction
from beatkeeper_worker import ownership, retries
from beatkeeper_worker.messages import message_of_headers
from beatkeeper_worker.pool_process import START_RETRY_DELAYS, line

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
    try:
        message = message_of_headers(headers)
    except (KeyError, ValueError):
        logger.error("message refused (%s); its run headers are malformed: %r", error, headers)  # noqa: TRY400
        return
    if message is None:
        return
    _on_main_connection(
        lambda db: fail_if_ours(db, message, error, worker=worker),
        lost=f"{message.described()} refused ({error}), not recorded",
    )


def fail_if_ours(db: recording.Connection, message: Message, error: str, *, worker: str) -> None:
    """Fail ``message``'s run with ``error``, if the run is the message's and nobody else is
    running it; otherwise log why and leave the run as it is."""
    refused = f"{message.described()} refused ({error})"
    row = recording.read_run(db, message.run_id, for_update=True)
    if row is None:
        logger.error("%s: no such run", refused)
        return
    wrong = mismatch(message, row)
    if wrong is not None:
        logger.error("%s: %s; the run is left as it is", refused, wrong)
        return
    if row.state == RunState.RUNNING and ownership.still_owned(db, row.owner, redelivered=False):
        running_on = row.owner_described()
        logger.error("%s: run %s of %s is running on %s", refused, *_of(message), running_on)
        return
    now = datetime.now(UTC)
    nobody = recording.owner_columns(None) | {"worker": worker}
    if not recording.fail(db, message.run_id, error=error, now=now, **nobody):
        logger.error("%s: the run is %s, left as it is", refused, row.state)
        return
    logger.error("run %s of %s failed: %s", *_of(message), error)
    retries.after_failure(db, message.run_id, error=error, now=now)


def _of(message: Message) -> tuple[uuid.UUID, str]:
    return message.run_id, message.schedule


def _fail_main(run_id: uuid.UUID, error: str) -> None:
    def fail(db: recording.Connection) -> None:
        now = datetime.now(UTC)
        if recording.fail(db, run_id, error=error, now=now):
            retries.after_failure(db, run_id, error=error, now=now)

    _on_main_connection(fail, lost=f"run {run_id} failed ({error}), not recorded")


def _on_main_connection(step: Callable[[recording.Connection], None], *, lost: str) -> None:
    """One transaction from the main process: a short-lived connection, none kept to fork."""
    for delay in (*START_RETRY_DELAYS, None):
        try:
            with main_process_transaction() as db:
                step(db)
            return
        except DatabaseUnavailable as down:
            if delay is None:
                logger.error("%s: %s", lost, line(down))  # noqa: TRY400
                return
            time.sleep(delay)
