"""Run tracking for any Celery task: one line in the user's app, ``install(app)``.

Beat publishes a run as an ordinary message for the user's own task name (so Flower and
routing see that name), with ``task_id = str(run.id)`` and the ``beatkeeper_*`` headers
(``messages``, the one contract between them). A worker of an app with tracking installed
moves the run ``enqueued → running`` before the task body starts and ``running →
succeeded | failed`` after it (``failed`` then goes on to ``retrying``/``dead``, see
``retries``). A message without those headers (the user's own ``.delay()``) is not
touched: no database work.

How a message is refused without a custom base class. The body must not run when the run is
already running or finished (invariant 3), and we cannot ask users to derive their tasks
from our class. Looked at, in Celery 5.7's source:

- ``task_prerun``/``task_received`` signals: ``Signal.send`` catches and logs whatever a
  receiver raises, so a receiver can observe a task but never stop it.
- ``app.task_cls`` / ``Task.Request`` / a custom ``Request``: only tasks created after the
  swap get it, and tasks with their own ``base=`` never do; ``Request`` runs in the
  worker's main process, where a database round trip per message would stall the
  consumer's event loop for every pool process.
- Patching ``celery.app.trace.build_tracer`` (what sentry-sdk does): global for every
  app in the process, and tied to a private function.

Chosen: when the worker starts (``worker_init``: every task module is imported, no pool
process forked and no tracer built yet) each of the app's tasks gets its ``run`` wrapped
on the instance. Celery's tracer calls ``task.run`` (or ``__call__``, which calls
``self.run``) with the message's request pushed, so the wrapper sees the headers, runs in
the pool process next to the body, and covers ``@app.task``, ``@shared_task`` and custom
base classes alike. To refuse, it raises ``celery.exceptions.Ignore``: the tracer skips
the body, stores no result, and the worker acknowledges the message. When PostgreSQL
cannot be reached it raises ``_Requeued``, a ``Reject(requeue=True)``: the message goes back
to the queue, and Celery's report of it keeps its one line but not the traceback Celery
adds to every reject (our own line already says why; an outage is not a bug).

This module wires Celery to the rest and must hold no SQL: the claim and the success of
every run are ``ledger``'s, take-overs ``ownership``'s, what a failure becomes ``retries``'s,
and the rarer outcomes it records (failures, releases) go through
``beatkeeper.store.recording``. A message the tenancy policy forbids is never executed; its
run, when the message is really that run's, is recorded ``failed`` with the policy's
reason. Messages no pool process runs: ``unstarted``; messages nobody can read:
``poison``; a run revoked because a person cancelled it: ``revoked``.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from celery import Celery, Task, signals
from celery.exceptions import Ignore, Reject, Retry
from celery.utils.saferepr import saferepr

from beatkeeper import logging as beatkeeper_logging
from beatkeeper.decisions.ownership import Owner
from beatkeeper.observability import metrics
from beatkeeper.policy import Policy, PolicyError, load_policy
from beatkeeper.settings import Settings, SettingsError
from beatkeeper.states import RunState
from beatkeeper.store import DatabaseUnavailable, recording
from beatkeeper.store.runs import SUMMARY_MAX_CHARS
from beatkeeper_worker import brokers, health, ledger, messages, poison, retries, revoked, unstarted
from beatkeeper_worker.messages import Delivery
from beatkeeper_worker.pool_process import (
    FINISH_RETRY_DELAYS,
    START_RETRY_DELAYS,
    PoolProcess,
    line,
)
from beatkeeper_worker.unstarted import describe_error

__all__ = ["describe_error", "install"]

logger = logging.getLogger("beatkeeper.worker")

_INSTALLED = "_beatkeeper_tracking"


class _Requeued(Reject):  # type: ignore[misc]  # celery has no type hints
    """A run handed back unstarted because its claim could not be recorded."""


class _NoTracebackForRequeued(logging.Filter):
    """Celery logs every ``Reject`` with its traceback; ours is an outage, said in one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], _Requeued):
            record.exc_info, record.exc_text = None, None
        return True


_QUIET_REQUEUES = _NoTracebackForRequeued()


def install(app: Celery) -> None:
    """Track every run of ``app``'s tasks in beatkeeper's database; idempotent.

    Turns on ``task_acks_late`` and ``task_reject_on_worker_lost`` unless the app's
    configuration sets them: without them a run on a killed worker is lost. Sets
    ``task_queue_max_priority`` unless configured, to declare queues as Beat does.
    """
    if getattr(app, _INSTALLED, False):
        return
    setattr(app, _INSTALLED, True)
    logging.getLogger("celery.app.trace").addFilter(_QUIET_REQUEUES)  # added once: same filter
    app.steps["consumer"].add(poison.DropUnreadable)
    if app.configured:
        _configure(app.conf)
    else:
        app.on_after_configure.connect(_configure, weak=False)

    def only_for(handler: Callable[..., None], app_of: Callable[[Any], Any]) -> Callable[..., None]:
        def receiver(sender: Any = None, **kwargs: Any) -> None:
            if app_of(sender) is app:
                handler(sender=sender, **kwargs)

        return receiver

    connections: list[tuple[Any, Callable[..., None]]] = [
        (signals.worker_init, only_for(_on_worker_init, lambda worker: worker.app)),
        (signals.worker_process_init, _on_process_init),
        (signals.worker_process_shutdown, _on_process_exit),
        (signals.before_task_publish, _on_publish),
        (signals.task_unknown, only_for(unstarted.on_unknown_task, lambda c: c.app)),
        (signals.task_rejected, only_for(unstarted.on_invalid_task, lambda c: c.app)),
        (signals.task_failure, only_for(unstarted.on_hard_time_limit, lambda task: task.app)),
        (signals.task_revoked, only_for(revoked.on_revoked, lambda task: task.app)),
    ]
    for signal, receiver in connections:
        signal.connect(receiver, weak=False)


def _configure(source: Any, **_: Any) -> None:
    _redeliver_lost_runs(source)
    # Beat declares every queue with it: a worker declaring the same queue without it
    # would be refused by RabbitMQ (ignored on Redis).
    if not source.value_set_for("task_queue_max_priority"):
        source["task_queue_max_priority"] = brokers.MAX_PRIORITY


def _redeliver_lost_runs(source: Any) -> None:
    for key in ("task_acks_late", "task_reject_on_worker_lost"):
        if not source.value_set_for(key):
            source[key] = True
        elif not source[key]:
            logger.warning("%s is off: runs on a worker that dies are lost", key)


# -- start-up ---------------------------------------------------------------------------

#: Your own worker beside `beatkeeper dev` reads the stack's URLs from the file it writes.
_DEV_HINT = (
    "; beside a running `beatkeeper dev`, load its URLs first: "
    "set -a; . .beatkeeper/dev/servers.env; set +a"
)


def _on_worker_init(sender: Any, **_: Any) -> None:
    """Check the settings once, loudly, and wrap every task before any pool process forks."""
    hint = ""
    try:
        settings = Settings.from_env()
        hint = "" if settings.database_url else _DEV_HINT
        settings.require_database_url()
        _policy()
    except (SettingsError, PolicyError) as error:
        # SystemExit: Celery prints the one line and stops, no traceback.
        raise SystemExit(f"beatkeeper run tracking cannot start: {error}{hint}") from None
    if settings.metrics_port is not None:
        health.serve_worker(settings, port=settings.metrics_port)
    pool = sender.pool_cls  # a name or a class: worker_init comes before Celery resolves it
    pool_name = pool if isinstance(pool, str) else pool.__module__
    # A prefork process runs one task at a time; thread pools run `concurrency` at once
    # (still "auto" here when so configured: then the pool's overflow makes up for it).
    concurrency = sender.concurrency if isinstance(sender.concurrency, int) else 0
    PoolProcess.threads = 1 if "prefork" in pool_name else max(4, concurrency)
    PoolProcess.tracking = True
    for name, task in sender.app.tasks.items():
        if not name.startswith("celery.") and not getattr(task.run, "_beatkeeper", False):
            task.run = _tracked(task, task.run)
            if not task.acks_late:
                logger.warning("task %s has acks_late off: its runs die with their worker", name)


def _on_process_init(**_: Any) -> None:
    if PoolProcess.tracking:  # not in a worker of some other app that merely imported us
        PoolProcess.current()  # build the engine now rather than on the first run


def _on_process_exit(**_: Any) -> None:
    """Read the answers to the outcomes this process sent last (see ``ledger``)."""
    if PoolProcess.tracking:
        ledger.read_answers_at_exit(PoolProcess.current())


# -- the wrapper around each task's body --------------------------------------------------


class _Running(threading.local):
    """The run this thread is executing, if any, and the owner name it runs under."""

    message: Delivery | None = None
    owner: Owner | None = None


_running = _Running()


def _tracked(task: Task, body: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(body)
    def run(*args: Any, **kwargs: Any) -> Any:
        request = task.request
        if not messages.is_run(request):
            return body(*args, **kwargs)
        if _running.message is not None and str(_running.message.run_id) == request.id:
            return body(*args, **kwargs)  # the task calling itself inside its own run
        return _execute(messages.delivery_of(request, task.name), body, args, kwargs)

    run._beatkeeper = True  # type: ignore[attr-defined]
    return run


def _execute(message: Delivery, body: Callable[..., Any], args: Any, kwargs: Any) -> Any:
    run_id = str(message.run_id)
    context = beatkeeper_logging.run_context(
        schedule=message.schedule,
        run_id=run_id,
        planned_at=message.planned_at,
        attempt=message.attempt,
        task_id=run_id,  # Beat publishes a run under its own id
    )
    with context:
        return _execute_in_context(message, body, args, kwargs)


def _execute_in_context(message: Delivery, body: Callable[..., Any], args: Any, kwargs: Any) -> Any:
    namespace = message.schedule.partition("/")[0]
    forbidden = _policy().forbids(namespace=namespace, task=message.task)
    if forbidden is not None:
        _refuse_forbidden(message, forbidden)
        raise Ignore
    process = PoolProcess.current()
    me = process.owner(message.hostname)
    try:
        started = process.retrying(START_RETRY_DELAYS, lambda: ledger.claim(process, message, me))
    except DatabaseUnavailable as down:
        # One line, no traceback: an outage is not a bug.
        logger.error("run %s of %s not started, message requeued: %s", *message.at(), line(down))  # noqa: TRY400
        raise _Requeued(line(down), requeue=True) from None
    if not started:
        raise Ignore
    _running.message, _running.owner = message, me
    began = time.perf_counter()
    try:
        result = body(*args, **kwargs)
    except (Retry, Reject) as handed_back:
        if isinstance(handed_back, Retry) or handed_back.requeue:
            _release(message, me)
        else:
            _finish_failed(message, handed_back)
        raise
    except Ignore:
        _finish(message, lambda db, now: _ignored(db, message.run_id, now=now))
        raise
    except Exception as error:
        _observe_duration(RunState.FAILED, began)
        _finish_failed(message, error)
        raise
    finally:
        _running.message = None
    _observe_duration(RunState.SUCCEEDED, began)
    ledger.succeeded(process, message, me, saferepr(result, SUMMARY_MAX_CHARS))
    return result


@functools.cache
def _policy() -> Policy:
    """The tenancy policy, read once per process (the worker checked it when it started)."""
    return load_policy(Settings.from_env().policy_file)


def _refuse_forbidden(message: Delivery, forbidden: str) -> None:
    """Never run it; fail its run when the message is really that run's (see ``unstarted``)."""
    said = message.message()
    worker = message.hostname or "unknown"
    _finish(
        message,
        lambda db, _now: unstarted.fail_if_ours(db, said, forbidden, worker=worker),
    )


def _observe_duration(state: RunState, began: float) -> None:
    metrics.RUN_DURATION.labels(state.value).observe(time.perf_counter() - began)


# -- the rarer outcomes: one transaction each on a pooled connection ---------------------


def _finish_failed(message: Delivery, error: BaseException) -> None:
    described = describe_error(error)
    _finish(message, lambda db, now: _failed(db, message.run_id, described, now=now))


def _failed(db: recording.Connection, run_id: uuid.UUID, error: str, *, now: datetime) -> None:
    if revoked.failed_instead(db, run_id, error, now=now):
        return  # a cancel was pending: cancelled, not retried
    if recording.fail(db, run_id, error=error, now=now):
        retries.after_failure(db, run_id, error=error, now=now)


def _on_publish(headers: dict[str, Any] | None = None, **_: Any) -> None:
    """``self.retry()`` republishes the running run: release it before the copy is sent."""
    message, owner = _running.message, _running.owner
    if message is None or owner is None or headers is None:
        return
    if headers.get("id") == str(message.run_id):
        _release(message, owner)


def _release(message: Delivery, owner: Owner) -> None:
    """The task handed its message back to Celery (retry, requeue): whoever gets it runs it."""
    _finish(message, lambda db, now: recording.release(db, message.run_id, owner=owner, now=now))


def _ignored(db: recording.Connection, run_id: uuid.UUID, *, now: datetime) -> None:
    recording.cancel(db, run_id, error="the task raised Ignore", now=now)


def _finish(message: Delivery, step: Callable[[recording.Connection, datetime], None]) -> None:
    """A rarer outcome (failure, release): one transaction on a pooled connection."""
    process = PoolProcess.current()

    def attempt() -> None:
        with process.sessions.transaction() as db:
            step(db, datetime.now(UTC))

    try:
        process.retrying(FINISH_RETRY_DELAYS, attempt)
    except DatabaseUnavailable as down:
        logger.error("run %s of %s finished but not recorded: %s", *message.at(), line(down))  # noqa: TRY400
