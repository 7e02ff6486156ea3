"""The Celery app the reliability suite's workers run: a user's app with tracking installed.

Started as ``celery -A reliability_app worker`` (``Fleet`` puts this folder on the
``PYTHONPATH``); ``tracking.install`` turns on ``acks_late`` and
``task_reject_on_worker_lost`` as for any user's app. Its one task, ``reliability.record``,
writes the marks the suite judges executions by: a row in ``bodies`` (the suite creates the
table) naming a new id for this execution, the run id (the Celery task id) and the pid,
committed when the body starts, and its ``finished_at``, committed when the body ends. A
run whose body ran twice shows two rows, and which processes ran them.

The broker's visibility timeout is short here: a message a SIGKILLed worker main process
had taken comes back after it (an hour by default), and the suite waits for every run.
The body rides out a PostgreSQL restart by itself: it retries its writes rather than
failing the run.
"""

from __future__ import annotations

import os
import time
import uuid
from typing import Any

import psycopg
from beatkeeper_worker import tracking
from celery import Celery, Task

TASK = "reliability.record"
VISIBILITY_TIMEOUT_SECONDS = 5
WRITE_DEADLINE_SECONDS = 60.0
#: The body's work: long enough that a SIGKILL often finds one running, short enough that
#: the workers keep up with 200 runs a second even while one of them restarts.
WORK_SECONDS = 0.01
STARTED = """
    INSERT INTO public.bodies (execution, run_id, pid) VALUES (%s, %s, %s)
    ON CONFLICT (execution) DO NOTHING
"""
FINISHED = """
    UPDATE public.bodies SET finished_at = clock_timestamp()
    WHERE execution = %s AND finished_at IS NULL
"""

app = Celery("reliability", broker=os.environ.get("RELIABILITY_BROKER_URL"))
app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    broker_transport_options={
        "visibility_timeout": VISIBILITY_TIMEOUT_SECONDS,
        "unacked_restore_interval": 1,
        "unacked_restore_throttle": 1,
    },
)
tracking.install(app)


class _Marks:
    """This process's connection to the marks table, opened after the fork."""

    pid = 0
    connection: psycopg.Connection[Any] | None = None

    @classmethod
    def write(cls, sql: str, *params: Any) -> None:
        """Run ``sql`` (autocommit) until it succeeds: PostgreSQL may be restarting.

        Each statement may run twice (a reply lost in a restart), so each is idempotent.
        """
        deadline = time.monotonic() + WRITE_DEADLINE_SECONDS
        while True:
            try:
                cls._connection().execute(sql, params)
                return
            except psycopg.OperationalError:
                cls.connection = None
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    @classmethod
    def _connection(cls) -> psycopg.Connection[Any]:
        if cls.connection is None or cls.connection.closed or cls.pid != os.getpid():
            url = os.environ["RELIABILITY_MARKS_URL"]
            cls.connection = psycopg.connect(url, autocommit=True, connect_timeout=5)
            cls.pid = os.getpid()
        return cls.connection


@app.task(bind=True, name=TASK)
def record(self: Task) -> None:
    execution = uuid.uuid4()
    _Marks.write(STARTED, execution, self.request.id, os.getpid())
    time.sleep(WORK_SECONDS)
    _Marks.write(FINISHED, execution)
