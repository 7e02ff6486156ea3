"""The one logging setup of every beatkeeper process: structlog, with stdlib logging through it.

``configure(settings)`` makes every line of the process come out the same way, whoever logs
it: structlog loggers, ``logging.getLogger`` (ours, Celery's, kombu's, the user's tasks).
``BEATKEEPER_LOG_FORMAT=json`` gives one JSON object per line for a log pipeline; ``console``
gives aligned, readable lines (without colours unless stderr is a terminal, so
``beatkeeper dev``'s prefixed merged log stays plain text). Both go to the process's real
stderr (``sys.__stderr__``): Celery may replace ``sys.stderr`` with a proxy that logs, and a
handler writing to it would log its own output forever.

Celery's own failure lines are cut to one line unless ``BEATKEEPER_LOG_LEVEL=DEBUG``
(``Quieter``): a failed task's traceback (the run's stored error and our own one-line
summary say what failed), and the unregistered- or invalid-message reports that dump the
raw message, its headers and delivery info.

``run_context`` binds the fields that name a run (``RUN_FIELDS``) to every line logged inside
it, in the current thread or task only (``contextvars``).

This module must not import Celery; calling ``configure`` again replaces the setup.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from typing import IO, Any

import structlog

from beatkeeper.settings import Settings

__all__ = ["HANDLER_NAME", "RUN_FIELDS", "Quieter", "configure", "run_context"]

HANDLER_NAME = "beatkeeper"
RUN_FIELDS = ("schedule", "namespace", "run_id", "planned_at", "attempt", "task_id")

_SHARED: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def configure(settings: Settings, *, stream: IO[str] | None = None) -> None:
    """Route all logging of this process through structlog, as ``settings`` say."""
    out = stream or sys.__stderr__ or sys.stderr
    renderer: Any
    if settings.log_format == "json":
        renderer = structlog.processors.JSONRenderer()
        last = [structlog.processors.format_exc_info, renderer]
    else:
        colours = bool(getattr(out, "isatty", lambda: False)())
        last = [structlog.dev.ConsoleRenderer(colors=colours)]
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_SHARED,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *last],
    )
    handler = logging.StreamHandler(out)
    handler.set_name(HANDLER_NAME)
    handler.setFormatter(formatter)
    handler.addFilter(Quieter())
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(settings.log_level)
    structlog.configure(
        processors=[
            *_SHARED,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


class Quieter(logging.Filter):
    """One line for what Celery reports at length, unless the root logger is at DEBUG.

    Matched by logger name and message text, as Celery writes them (5.x): this module must
    not import Celery.
    """

    _FAILED_TASK_LOGGER = "celery.app.trace"
    _MESSAGE_REPORTS = {
        "Received unregistered task of type %s.": (
            "Received unregistered task of type %s: no module the worker imports defines it "
            "(add it to the worker's imports, or give the schedule a queue: that only "
            "workers with the task consume)"
        ),
        "Received invalid task message: %s": "Received invalid task message: %s",
    }

    def filter(self, record: logging.LogRecord) -> bool:
        if logging.getLogger().isEnabledFor(logging.DEBUG):
            return True
        if record.name == self._FAILED_TASK_LOGGER and record.exc_info:
            record.exc_info, record.exc_text = None, None
            return True
        first_line = str(record.msg).split("\n", 1)[0]
        if (short := self._MESSAGE_REPORTS.get(first_line)) is not None and record.args:
            record.msg, record.args = short, (_first(record.args),)
            record.exc_info, record.exc_text = None, None
        return True


def _first(args: object) -> object:
    return args[0] if isinstance(args, tuple) else args


@contextlib.contextmanager
def run_context(
    *, schedule: str, run_id: str, planned_at: str | None, attempt: int | None, task_id: str
) -> Iterator[None]:
    """Every line logged inside carries the run's fields; ``schedule`` is ``namespace/name``."""
    namespace, _, name = schedule.rpartition("/")
    fields = dict(
        zip(RUN_FIELDS, (name, namespace, run_id, planned_at, attempt, task_id), strict=True)
    )
    with structlog.contextvars.bound_contextvars(**fields):
        yield
