"""Run tracking for any Celery task: one line in the user's app, ``install(app)``.

Beat publishes a run as an ordinary message for the user's own task name (so Flower and
routing see that name), with ``task_id = str(run.id)`` and the ``beatkeeper_*`` headers
built by ``message_headers``. A worker of an app with tracking installed moves the run
``enqueued → running`` before the task body starts and ``running → succeeded | failed``
after it (``failed`` then goes on to ``retrying``/``dead``, see ``retries``). A message
without those headers (the user's own ``.delay()``) is not touched: no database work.

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
cannot be reached it raises ``Reject(requeue=True)``: the message goes back to the queue.

Who owns a running run. Each pool process has its own engine, opened after the fork, whose
PostgreSQL ``application_name`` carries a random per-process token; the run's ``worker``
column names the host, pid and that token. A message for a ``running`` run may take it
over only when no database session with the owner's token exists any more: the owning
process died (SIGKILL, OOM; its socket closed and its backend exited) and the message came
back through ``acks_late``/``task_reject_on_worker_lost`` or a visibility timeout. A live
owner keeps its run, so a duplicate delivered while the body runs elsewhere is dropped.
This needs a direct session per process (or PgBouncer in session mode).

What it costs. A bare no-op costs Celery about a millisecond of CPU, so every run's two
round trips (the claim; the outcome, with the reset of the schedule's failure count in the
same statement) go through a connection each process holds (no pool checkout, no ping),
as the SQL ``transition`` builds, compiled once (``_Compiled``). The outcome is committed
before the task returns, so before Celery acknowledges the message: a process killed after
its body ran gets its run taken over and run again rather than left unrecorded.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

from celery import Celery, Task, signals
from celery.exceptions import Ignore, Reject, Retry, TimeLimitExceeded
from celery.utils.saferepr import saferepr
from sqlalchemy import (
    Connection,
    CursorResult,
    Dialect,
    Engine,
    Update,
    bindparam,
    exc,
    select,
    text,
    update,
)
from sqlalchemy.pool import NullPool

from beatkeeper import logging as beatkeeper_logging
from beatkeeper.observability import metrics
from beatkeeper.settings import Settings, SettingsError
from beatkeeper.states import RunState
from beatkeeper.store.engine import DatabaseUnavailable, make_engine
from beatkeeper.store.models import runs
from beatkeeper.store.runs import SUMMARY_MAX_CHARS, transition
from beatkeeper_worker import health, retries

__all__ = ["HEADERS", "describe_error", "install", "message_headers", "session_name"]

logger = logging.getLogger("beatkeeper.worker")

HEADERS = (
    "beatkeeper_schedule",
    "beatkeeper_schedule_id",
    "beatkeeper_planned_at",
    "beatkeeper_attempt",
    "beatkeeper_max_attempts",
)
"""The headers that mark a message as a run (Beat's side of the contract)."""

#: Waits between tries of a database step; then the message is requeued (before the
#: body) or the outcome is given up with an error line (after it: the body never reruns).
START_RETRY_DELAYS = (0.1, 0.3, 1.0, 2.0)
FINISH_RETRY_DELAYS = (0.1, 0.3, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0)
OWNER_EXIT_GRACE_SECONDS = 2.0

_DOWN = (DatabaseUnavailable, exc.OperationalError, exc.InterfaceError)
_SESSION = re.compile(r"session ([0-9a-f]{12})\)$")
_INSTALLED = "_beatkeeper_tracking"
_CREATING = threading.Lock()
_T = TypeVar("_T")


def message_headers(
    *, schedule: str, schedule_id: uuid.UUID, planned_at: datetime, attempt: int, max_attempts: int
) -> dict[str, str | int]:
    """The headers Beat publishes a run with (``schedule`` is ``namespace/name``)."""
    values = (schedule, str(schedule_id), planned_at.isoformat(), attempt, max_attempts)
    return dict(zip(HEADERS, values, strict=True))


def install(app: Celery) -> None:
    """Track every run of ``app``'s tasks in beatkeeper's database; idempotent.

    Turns on ``task_acks_late`` and ``task_reject_on_worker_lost`` unless the app's
    configuration sets them: without them a run on a killed worker is lost.
    """
    if getattr(app, _INSTALLED, False):
        return
    setattr(app, _INSTALLED, True)
    if app.configured:
        _redeliver_lost_runs(app.conf)
    else:
        app.on_after_configure.connect(_redeliver_lost_runs, weak=False)

    def only_for(handler: Callable[..., None], app_of: Callable[[Any], Any]) -> Callable[..., None]:
        def receiver(sender: Any = None, **kwargs: Any) -> None:
            if app_of(sender) is app:
                handler(sender=sender, **kwargs)

        return receiver

    connections: list[tuple[Any, Callable[..., None]]] = [
        (signals.worker_init, only_for(_on_worker_init, lambda worker: worker.app)),
        (signals.worker_process_init, _on_process_init),
        (signals.before_task_publish, _on_publish),
        (signals.task_unknown, only_for(_on_unknown_task, lambda consumer: consumer.app)),
        (signals.task_rejected, only_for(_on_invalid_task, lambda consumer: consumer.app)),
        (signals.task_failure, only_for(_on_hard_time_limit, lambda task: task.app)),
    ]
    for signal, receiver in connections:
        signal.connect(receiver, weak=False)


def _redeliver_lost_runs(source: Any, **_: Any) -> None:
    for key in ("task_acks_late", "task_reject_on_worker_lost"):
        if not source.value_set_for(key):
            source[key] = True
        elif not source[key]:
            logger.warning("%s is off: runs on a worker that dies are lost", key)


# -- start-up ---------------------------------------------------------------------------


def _on_worker_init(sender: Any, **_: Any) -> None:
    """Check the settings once, loudly, and wrap every task before any pool process forks."""
    try:
        settings = Settings.from_env()
        settings.require_database_url()
    except SettingsError as error:
        # SystemExit: Celery prints the one line and stops, no traceback.
        raise SystemExit(f"beatkeeper run tracking cannot start: {error}") from None
    if settings.metrics_port is not None:
        health.serve_worker(settings, port=settings.metrics_port)
    pool = sender.pool_cls  # a name or a class: worker_init comes before Celery resolves it
    pool_name = pool if isinstance(pool, str) else pool.__module__
    # A prefork process runs one task at a time; thread pools run `concurrency` at once
    # (still "auto" here when so configured: then the pool's overflow makes up for it).
    concurrency = sender.concurrency if isinstance(sender.concurrency, int) else 0
    _Process.threads = 1 if "prefork" in pool_name else max(4, concurrency)
    _Process.wanted = True
    for name, task in sender.app.tasks.items():
        if not name.startswith("celery.") and not getattr(task.run, "_beatkeeper", False):
            task.run = _tracked(task, task.run)
            if not task.acks_late:
                logger.warning("task %s has acks_late off: its runs die with their worker", name)


def _on_process_init(**_: Any) -> None:
    if _Process.wanted:  # not in a worker of some other app that merely imported us
        _Process.current()  # build the engine now rather than on the first run


# -- the wrapper around each task's body --------------------------------------------------


@dataclass(frozen=True)
class _Message:
    run_id: uuid.UUID
    schedule: str
    schedule_id: uuid.UUID
    hostname: str | None
    redelivered: bool
    planned_at: str | None = None
    attempt: int | None = None


class _Running(threading.local):
    """The run this thread is executing, if any, and the owner name it runs under."""

    message: _Message | None = None
    owner: str = ""


_running = _Running()


def _tracked(task: Task, body: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(body)
    def run(*args: Any, **kwargs: Any) -> Any:
        request = task.request
        if getattr(request, "beatkeeper_schedule_id", None) is None:
            return body(*args, **kwargs)
        if _running.message is not None and str(_running.message.run_id) == request.id:
            return body(*args, **kwargs)  # the task calling itself inside its own run
        return _execute(_message(request), body, args, kwargs)

    run._beatkeeper = True  # type: ignore[attr-defined]
    return run


def _message(request: Any) -> _Message:
    return _Message(
        run_id=uuid.UUID(request.id),
        schedule=request.beatkeeper_schedule,
        schedule_id=uuid.UUID(request.beatkeeper_schedule_id),
        hostname=request.hostname,
        redelivered=bool((request.delivery_info or {}).get("redelivered")),
        planned_at=getattr(request, "beatkeeper_planned_at", None),
        attempt=getattr(request, "beatkeeper_attempt", None),
    )


def _execute(message: _Message, body: Callable[..., Any], args: Any, kwargs: Any) -> Any:
    context = beatkeeper_logging.run_context(
        schedule=message.schedule,
        run_id=str(message.run_id),
        planned_at=message.planned_at,
        attempt=message.attempt,
        task_id=str(message.run_id),  # Beat publishes a run under its own id
    )
    with context:
        return _execute_in_context(message, body, args, kwargs)


def _execute_in_context(message: _Message, body: Callable[..., Any], args: Any, kwargs: Any) -> Any:
    process = _Process.current()
    me = process.owner(message.hostname)
    try:
        started = process.retrying(START_RETRY_DELAYS, lambda: _start(process, message, me))
    except _DatabaseDown as down:
        # One line, no traceback: an outage is not a bug.
        logger.error("run %s of %s not started, message requeued: %s", *_at(message), down)  # noqa: TRY400
        raise Reject(str(down), requeue=True) from None
    if not started:
        raise Ignore
    _running.message, _running.owner = message, me
    began = time.perf_counter()
    try:
        result = body(*args, **kwargs)
    except (Retry, Reject) as handed_back:
        if isinstance(handed_back, Retry) or handed_back.requeue:
            _finish(message, lambda db, now: _release(db, message.run_id, me, now=now))
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
    summary = saferepr(result, SUMMARY_MAX_CHARS)
    try:
        process.retrying(FINISH_RETRY_DELAYS, lambda: _succeeded(process, message, summary))
    except _DatabaseDown as down:
        logger.error("run %s of %s succeeded, not recorded: %s", *_at(message), down)  # noqa: TRY400
    return result


def _observe_duration(state: RunState, began: float) -> None:
    metrics.RUN_DURATION.labels(state.value).observe(time.perf_counter() - began)


def _at(message: _Message) -> tuple[uuid.UUID, str]:
    return message.run_id, message.schedule


# -- this pool process: its engine, its held connections, its identity --------------------


class _Process:
    """This process's engine, the connections it holds, and the owner name of its runs."""

    threads = 1
    wanted = False  # set when a worker of a tracked app starts
    _instance: _Process | None = None

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.token = secrets.token_hex(6)
        self.engine = make_engine(
            Settings.from_env(),
            application_name=session_name(self.token),
            pool_size=self.threads + 1,  # one held per thread, one for failures
            max_overflow=self.threads,
        )
        dialect = self.engine.dialect
        self.claim = _Compiled.of_transition(dialect, RunState.RUNNING, "worker")
        # One round trip records a success and, if the run did move, restarts the count of
        # the schedule's consecutive failures.
        self.success = _Compiled.of_transition(dialect, RunState.SUCCEEDED, "result").then(
            _Compiled.of(retries.RESET_FAILURES, dialect, "schedule_id")
        )
        self._held = threading.local()

    @classmethod
    def current(cls) -> _Process:
        """Built after the fork: a connection inherited from a parent must never be used."""
        instance = cls._instance
        if instance is None or instance.pid != os.getpid():
            with _CREATING:  # thread pools: every thread must share the one identity
                if cls._instance is None or cls._instance.pid != os.getpid():
                    cls._instance = _Process()
                instance = cls._instance
        return instance

    def owner(self, hostname: str | None) -> str:
        return f"{hostname or 'unknown'} (pid {self.pid}, session {self.token})"

    def connection(self) -> Connection:
        """This thread's held autocommit connection (no pool checkout, no ping per run)."""
        connection: Connection | None = getattr(self._held, "connection", None)
        if connection is None or connection.closed or connection.invalidated:
            connection = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            self._held.connection = connection
        return connection

    def retrying(self, delays: tuple[float, ...], step: Callable[[], _T]) -> _T:
        """Run ``step``; while the database is unreachable, drop held connections and retry."""
        for delay in delays:
            try:
                return step()
            except _DOWN as error:
                self._drop()
                logger.warning(
                    "database unavailable, trying again in %.1fs: %s", delay, _line(error)
                )
                time.sleep(delay)
        try:
            return step()
        except _DOWN as error:
            self._drop()
            raise _DatabaseDown(_line(error)) from None

    def _drop(self) -> None:
        connection: Connection | None = getattr(self._held, "connection", None)
        self._held.connection = None
        if connection is not None:
            with contextlib.suppress(Exception):  # it is broken already; drop it whatever
                connection.invalidate()
                connection.close()


def session_name(token: str) -> str:
    """The ``application_name`` of a worker process's sessions (at most 63 bytes)."""
    return f"beatkeeper-worker {token}"


class _Recorder:
    """Stands in for a Connection: keeps the statement ``transition`` builds, runs nothing."""

    statement: Update

    def execute(self, statement: Update) -> _Recorder:
        self.statement = statement
        return self

    def first(self) -> tuple[bool]:
        return (True,)


_SOME_RUN = uuid.UUID("00000000-0000-4000-8000-00000000b33f")
_SOME_TIME = datetime(2000, 1, 1, 0, 0, 0, 424242, tzinfo=UTC)


@dataclass(frozen=True)
class _Compiled:
    """A statement as driver SQL, compiled once; ``of_transition`` for a run's moves.

    ``transition`` stays the one definition of a move (its source states, the timestamps
    it stamps): ``of_transition`` records the statement it builds for a placeholder run and
    time, with the named fields left as bind parameters, which gives the exact same UPDATE
    for tens of microseconds per run instead of hundreds.
    """

    sql: str
    constants: dict[str, Any]
    now_keys: tuple[str, ...] = ()
    id_keys: tuple[str, ...] = ()

    @classmethod
    def of_transition(cls, dialect: Dialect, to: RunState, *fields: str) -> _Compiled:
        recorder = _Recorder()
        placeholders: dict[str, Any] = {name: bindparam(name, None) for name in fields}
        transition(cast(Connection, recorder), _SOME_RUN, to, now=_SOME_TIME, **placeholders)
        return cls.of(recorder.statement, dialect, *fields)

    @classmethod
    def of(cls, statement: Update, dialect: Dialect, *fields: str) -> _Compiled:
        compiled = statement.compile(dialect=dialect, compile_kwargs={"render_postcompile": True})
        values = compiled.params
        now_keys = tuple(key for key, value in values.items() if value == _SOME_TIME)
        id_keys = tuple(key for key, value in values.items() if value == _SOME_RUN)
        constants = {k: v for k, v in values.items() if k not in {*now_keys, *id_keys, *fields}}
        return cls(str(compiled), constants, now_keys, id_keys)

    def then(self, other: _Compiled) -> _Compiled:
        """This ``UPDATE … RETURNING`` and, when it changed a row, ``other`` (an UPDATE …
        WHERE), as one statement returning what this one returns."""
        # Two compiled statements put together; every value travels as a parameter.
        moved = f"WITH moved AS ({self.sql}), "
        sql = f"{moved}followed AS ({other.sql} AND EXISTS (SELECT FROM moved)) SELECT * FROM moved"  # noqa: S608
        constants = {**self.constants, **other.constants}
        return _Compiled(
            sql, constants, self.now_keys + other.now_keys, self.id_keys + other.id_keys
        )

    def execute(
        self,
        db: Connection,
        run_id: uuid.UUID | None = None,
        now: datetime | None = None,
        **values: Any,
    ) -> CursorResult[Any]:
        parameters: dict[str, Any] = {**self.constants, **values}
        parameters.update(dict.fromkeys(self.now_keys, now))
        parameters.update(dict.fromkeys(self.id_keys, run_id))
        return db.exec_driver_sql(self.sql, parameters)


# -- the database steps ------------------------------------------------------------------


def _start(process: _Process, message: _Message, me: str) -> bool:
    db = process.connection()
    if process.claim.execute(db, message.run_id, datetime.now(UTC), worker=me).first():
        return True
    return _take_over(db, message, me, now=datetime.now(UTC))


def _take_over(db: Connection, message: _Message, me: str, *, now: datetime) -> bool:
    """Run ``message``'s run after all if it is ``running`` for a process that is gone."""
    row = db.execute(select(runs.c.state, runs.c.worker).where(runs.c.id == message.run_id)).first()
    if row is None:
        logger.warning("run %s of %s does not exist: message dropped", *_at(message))
        return False
    if row.state != RunState.RUNNING:
        logger.info("run %s of %s is %s: not run again", *_at(message), row.state)
        return False
    if row.worker == me or _still_owned(db, row.worker, redelivered=message.redelivered):
        logger.info("run %s of %s is running on %s: not run twice", *_at(message), row.worker)
        return False
    taken = db.execute(
        update(runs)
        .where(runs.c.id == message.run_id, runs.c.state == RunState.RUNNING.value)
        .where(runs.c.worker.is_not_distinct_from(row.worker))
        .values(worker=me, started_at=now, finished_at=None, updated_at=now)
        .returning(runs.c.id)
    ).first()
    if taken is not None:
        logger.warning("run %s of %s taken over from %s: it is gone", *_at(message), row.worker)
    return taken is not None


def _still_owned(db: Connection, owner: str | None, *, redelivered: bool) -> bool:
    """Whether ``owner`` still runs the run; a redelivery gives a dying owner a moment.

    A killed process's backend exits as soon as PostgreSQL reads the closed socket, which
    can be a moment after the worker already requeued the message.
    """
    deadline = time.monotonic() + (OWNER_EXIT_GRACE_SECONDS if redelivered else 0.0)
    while _alive(db, owner):
        if time.monotonic() >= deadline:
            return True
        time.sleep(0.05)
    return False


def _alive(db: Connection, owner: str | None) -> bool:
    """Whether the process named ``owner`` (a ``worker`` column value) still has a session."""
    found = _SESSION.search(owner or "")
    if found is None:
        return False  # released (NULL) or not ours: nobody holds it
    query = text("SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE application_name = :name)")
    return bool(db.execute(query, {"name": session_name(found.group(1))}).scalar())


def _succeeded(process: _Process, message: _Message, summary: str) -> None:
    values = {"result": summary, "schedule_id": message.schedule_id}
    db, now = process.connection(), datetime.now(UTC)
    if process.success.execute(db, message.run_id, now, **values).first():
        metrics.RUNS_FINISHED.labels(RunState.SUCCEEDED.value).inc()
    else:
        logger.warning("run %s of %s succeeded but was no longer running", *_at(message))


def _finish_failed(message: _Message, error: BaseException) -> None:
    described = describe_error(error)
    _finish(message, lambda db, now: _failed(db, message.run_id, described, now=now))


def _failed(db: Connection, run_id: uuid.UUID, error: str, *, now: datetime) -> None:
    if transition(db, run_id, RunState.FAILED, now=now, error=error):
        retries.settle_failure(db, run_id, error=error, now=now)


def _on_publish(headers: dict[str, Any] | None = None, **_: Any) -> None:
    """``self.retry()`` republishes the running run: release it before the copy is sent."""
    message = _running.message
    if message is not None and headers is not None and headers.get("id") == str(message.run_id):
        owner = _running.owner
        _finish(message, lambda db, now: _release(db, message.run_id, owner, now=now))


def _release(db: Connection, run_id: uuid.UUID, me: str, *, now: datetime) -> None:
    """The task handed its message back to Celery (retry, requeue): whoever gets it runs it."""
    db.execute(
        update(runs)
        .where(runs.c.id == run_id, runs.c.state == RunState.RUNNING.value, runs.c.worker == me)
        .values(worker=None, updated_at=now)
    )


def _ignored(db: Connection, run_id: uuid.UUID, *, now: datetime) -> None:
    transition(db, run_id, RunState.CANCELLED, now=now, error="the task raised Ignore")


def describe_error(error: BaseException) -> str:
    """``ExceptionType: message``, as the runs table records errors."""
    message = str(error)
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def _finish(message: _Message, step: Callable[[Connection, datetime], None]) -> None:
    """A rarer outcome (failure, release): one transaction on a pooled connection."""
    process = _Process.current()

    def attempt() -> None:
        with process.engine.begin() as db:
            step(db, datetime.now(UTC))

    try:
        process.retrying(FINISH_RETRY_DELAYS, attempt)
    except _DatabaseDown as down:
        logger.error("run %s of %s finished but not recorded: %s", *_at(message), down)  # noqa: TRY400


class _DatabaseDown(Exception):  # noqa: N818 (a state, like TimeoutError)
    pass


def _line(error: BaseException) -> str:
    original = getattr(error, "orig", None) or error
    return " ".join(str(original).split())


# -- messages a pool process never sees (the worker's main process) ------------------------


def _on_unknown_task(sender: Any, message: Any, name: str, **_: Any) -> None:
    error = f"NotRegistered: no task named {name!r} on worker {sender.hostname}"
    _fail_unstarted(message.headers or {}, error, worker=sender.hostname)


def _on_invalid_task(sender: Any, message: Any, exc: BaseException | None, **_: Any) -> None:
    if exc is not None:
        _fail_unstarted(message.headers or {}, describe_error(exc), worker=sender.hostname)


def _on_hard_time_limit(task_id: str, exception: BaseException, **_: Any) -> None:
    """The pool killed the process: its wrapper never got to record the outcome."""
    if isinstance(exception, TimeLimitExceeded):
        _fail_main(uuid.UUID(task_id), describe_error(exception))


def _fail_unstarted(headers: dict[str, Any], error: str, *, worker: str) -> None:
    if headers.get("beatkeeper_schedule_id") is None:
        return
    logger.error("run %s of %s failed: %s", headers["id"], headers["beatkeeper_schedule"], error)
    _fail_main(uuid.UUID(headers["id"]), error, worker=worker)


def _fail_main(run_id: uuid.UUID, error: str, *, worker: str | None = None) -> None:
    """Record a failure from the main process: a short-lived connection, none kept to fork."""
    extra = {} if worker is None else {"worker": worker}
    for delay in (*START_RETRY_DELAYS, None):
        try:
            with _main_engine().begin() as db:
                now = datetime.now(UTC)
                if transition(db, run_id, RunState.FAILED, now=now, error=error, **extra):
                    retries.settle_failure(db, run_id, error=error, now=now)
            return
        except _DOWN as down:
            if delay is None:
                logger.error("run %s failed (%s), not recorded: %s", run_id, error, _line(down))  # noqa: TRY400
                return
            time.sleep(delay)


@functools.cache
def _main_engine() -> Engine:
    return make_engine(
        Settings.from_env(), application_name="beatkeeper-worker-main", poolclass=NullPool
    )
