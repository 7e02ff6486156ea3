"""What the measured Beat processes of the benchmarks load with ``celery -A _common:NAME``.

``beatkeeper``: beatkeeper's app, logging its tick statistics every second.
``peer``: a plain Celery app whose Beat holds the same interval entries, for Celery's
default scheduler (``-S _common:MeasuredPersistentScheduler``) and celery-redbeat
(``-S _common:MeasuredRedBeatScheduler``). Both peers are the real schedulers with one
method wrapped to record, per publish, when it happened and how late it was; the entries'
due times are spread like beatkeeper's (entry ``e{i}`` first due at ``base + i * period / N``).

Environment: ``BENCH_BROKER_URL``, ``BENCH_N``, ``BENCH_PERIOD`` (seconds), ``BENCH_BASE``
(epoch seconds), ``BENCH_RECORD`` (file the peers append "publish_time lag" lines to).
"""

from __future__ import annotations

import atexit
import json
import os
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from celery import Celery
from celery.beat import PersistentScheduler
from celery.schedules import schedule

PEER_QUEUE = "bench-peer"
QUEUE = "bench"


def __getattr__(name: str) -> Any:
    if name == "beatkeeper":
        from beatkeeper_worker.app import app  # noqa: PLC0415

        app.conf.beatkeeper_beat_stats_every = 1.0
        return app
    if name == "peer":
        return peer_app(os.environ["BENCH_BROKER_URL"])
    if name == "MeasuredRedBeatScheduler":
        return _measured_redbeat()
    raise AttributeError(name)


def spread(n: int, i: int, period: float, base: float) -> datetime:
    """When entry ``i`` of ``n`` is first due: evenly spread over one period from ``base``."""
    return datetime.fromtimestamp(base + i * period / n, UTC)


def peer_app(broker: str) -> Celery:
    app = Celery("peer", broker=broker)
    n, period = int(os.environ.get("BENCH_N", "0")), float(os.environ.get("BENCH_PERIOD", "60"))
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_default_queue=PEER_QUEUE,
        redbeat_redis_url=broker,
        # Tuned for a fair comparison: with its defaults redbeat slept a whole period between
        # ticks here; a 1 s loop needs a lock that outlives one slow tick.
        beat_max_loop_interval=1,
        redbeat_lock_timeout=60,
        beat_schedule={
            f"e{i}": {"task": "bench.noop", "schedule": schedule(timedelta(seconds=period))}
            for i in range(n)
        }
        if os.environ.get("BENCH_CONF_ENTRIES")
        else {},
    )
    return app


class _Recorder:
    def __init__(self) -> None:
        self._out = open(os.environ["BENCH_RECORD"], "a")  # noqa: SIM115
        self._flushed = time.monotonic()
        atexit.register(self._out.close)

    def published(self, entry: Any) -> None:
        due = entry.last_run_at + entry.schedule.run_every
        now = time.time()
        self._out.write(f"{now} {now - due.timestamp()}\n")
        if time.monotonic() - self._flushed > 0.5:
            self._out.flush()
            self._flushed = time.monotonic()


class MeasuredPersistentScheduler(PersistentScheduler):  # type: ignore[misc]
    """Celery's default scheduler, its entries' last runs set so their due times spread."""

    def setup_schedule(self) -> None:
        super().setup_schedule()
        self.recorder = _Recorder()
        n, period = int(os.environ["BENCH_N"]), float(os.environ["BENCH_PERIOD"])
        base = float(os.environ["BENCH_BASE"])
        for name, entry in self.schedule.items():
            if name.startswith("e"):
                entry.last_run_at = spread(n, int(name[1:]), period, base) - timedelta(
                    seconds=period
                )
        self._heap = None

    def apply_async(self, entry: Any, *args: Any, **kwargs: Any) -> Any:
        result = super().apply_async(entry, *args, **kwargs)
        self.recorder.published(entry)
        return result


def redbeat_installed() -> bool:
    try:
        import redbeat  # noqa: F401, PLC0415 (importing it registers a beat_init handler)
    except ImportError:
        return False
    return True


def _measured_redbeat() -> type:
    from redbeat import RedBeatScheduler  # noqa: PLC0415

    class MeasuredRedBeatScheduler(RedBeatScheduler):  # type: ignore[misc]
        """celery-redbeat as shipped; entries are loaded by ``load_redbeat_entries``."""

        def setup_schedule(self) -> None:
            super().setup_schedule()
            self.recorder = _Recorder()

        def apply_async(self, entry: Any, *args: Any, **kwargs: Any) -> Any:
            result = super().apply_async(entry, *args, **kwargs)
            self.recorder.published(entry)
            return result

    return MeasuredRedBeatScheduler


def load_redbeat_entries(app: Celery, n: int, period: float, base: float) -> None:
    """Write ``n`` redbeat entries straight into Redis, the way ``RedBeatSchedulerEntry.save``
    would, in pipelines of a thousand (entry by entry takes minutes at 100,000)."""
    from redbeat.decoder import RedBeatJSONEncoder  # noqa: PLC0415
    from redbeat.schedulers import RedBeatSchedulerEntry, ensure_conf, get_redis  # noqa: PLC0415

    conf = ensure_conf(app)
    client = get_redis(app)
    every = schedule(timedelta(seconds=period))
    pipe = client.pipeline(transaction=False)
    for i in range(n):
        due = spread(n, i, period, base)
        key = RedBeatSchedulerEntry.generate_key(app, f"e{i}")
        definition = {
            "name": f"e{i}",
            "task": "bench.noop",
            "args": [],
            "kwargs": {},
            "options": {},
            "schedule": every,
            "enabled": True,
        }
        meta = {"last_run_at": due - timedelta(seconds=period)}
        pipe.hset(key, "definition", json.dumps(definition, cls=RedBeatJSONEncoder))
        pipe.hset(key, "meta", json.dumps(meta, cls=RedBeatJSONEncoder))
        pipe.zadd(conf.schedule_key, {key: due.timestamp()})
        if i % 1000 == 999:
            pipe.execute()
    pipe.execute()
