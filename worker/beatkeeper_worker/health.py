"""What the probes of Beat and of a worker check, and the server that answers them.

Beat (``BeatHealth``, fed by ``DatabaseScheduler`` once per turn of its loop):

- live while its tick loop turns: a turn (a tick and its wait, or a failed tick and its
  backoff) at least every ``max(60 s, 3 * the longest sleep)``; a wedged Beat is restarted.
- ready while the database and the broker were reachable the last time Beat used them (the
  database every tick; the broker whenever it published, and every few seconds when it
  counts its default queue). An outage makes Beat unready, not dead: restarting would not help.

A worker (``serve_worker``, called from ``worker_init`` in the main process, before the pool
forks):

- live while the main process's event loop turns: a timer on the consumer's own timer (the
  one the event loop drives) stamps a heartbeat every few seconds. Before the worker is
  ready there is no loop to watch, so it counts as live (readiness says it is starting).
- ready once ``worker_ready`` fired and the database answered that its runs table is there
  (from the probe's thread at most every ``DATABASE_CHECK_EVERY`` seconds, with a short
  connect timeout): a worker pointed at a schema never migrated, or at another schema than
  Beat's, is not ready and says so.
- its run metrics are counted across the pool's processes (``metrics.share_across_processes``).

This module serves; it must not decide anything about runs.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
from typing import Any

from celery import signals

from beatkeeper.observability import metrics
from beatkeeper.observability.http import CachedCheck, Check, HealthServer, Heartbeat
from beatkeeper.settings import Settings
from beatkeeper.store import SchemaMissing, sessions

__all__ = ["BeatHealth", "serve_worker"]

log = logging.getLogger(__name__)

HEARTBEAT_EVERY = 5.0
WORKER_LOOP_MAX_AGE = 60.0
DATABASE_CHECK_EVERY = 10.0
DATABASE_CHECK_CONNECT_TIMEOUT = 2


class BeatHealth:
    """Beat's probes: a heartbeat per turn of the loop, and what each tick could reach."""

    def __init__(self, *, longest_sleep: float) -> None:
        self.heartbeat = Heartbeat("Beat's tick loop", max_age=max(60.0, 3 * longest_sleep))
        self._unreachable: dict[str, str] = {"database": "no tick has finished yet"}

    def reached(self, server: str) -> None:
        self._unreachable.pop(server, None)

    def unreachable(self, server: str, reason: str) -> None:
        self._unreachable[server] = reason

    def ready(self) -> tuple[bool, str]:
        problems = dict(self._unreachable)  # a copy: the tick loop writes meanwhile
        if problems:
            return False, "; ".join(f"{server}: {why}" for server, why in problems.items())
        return True, ""

    def serve(self, port: int) -> HealthServer:
        liveness = {"loop": self.heartbeat}
        return HealthServer(port=port, liveness=liveness, readiness={"beat": self.ready}).start()


# -- workers --------------------------------------------------------------------------------


@dataclasses.dataclass
class _WorkerHealth:
    heartbeat: Heartbeat
    database: CachedCheck
    ready: bool = False

    def live(self) -> tuple[bool, str]:
        return self.heartbeat() if self.ready else (True, "")

    def serving(self) -> tuple[bool, str]:
        return (True, "") if self.ready else (False, "the worker is starting")


def serve_worker(settings: Settings, *, port: int) -> HealthServer:
    """Serve this worker's probes and metrics; call it in the main process before the fork."""
    ours = not os.environ.get(metrics.MULTIPROC_DIR)  # else whoever set it cleans it up
    directory = metrics.share_across_processes()
    metrics.label_schedules(settings.metrics_schedule_labels, settings.metrics_schedule_limit)
    health = _WorkerHealth(
        heartbeat=Heartbeat("the worker's event loop", max_age=WORKER_LOOP_MAX_AGE),
        database=CachedCheck(_database_check(settings), every=DATABASE_CHECK_EVERY),
    )
    server = HealthServer(
        port=port,
        liveness={"loop": health.live},
        readiness={"worker": health.serving, "database": health.database},
    ).start()

    def on_ready(sender: Any, **_: Any) -> None:
        health.heartbeat.beat()
        sender.timer.call_repeatedly(HEARTBEAT_EVERY, health.heartbeat.beat)
        health.ready = True

    def on_process_exit(pid: int, **_: Any) -> None:
        metrics.process_exited(pid)

    def on_shutdown(**_: Any) -> None:
        health.ready = False
        server.stop()
        if ours:
            shutil.rmtree(directory, ignore_errors=True)

    signals.worker_ready.connect(on_ready, weak=False)
    signals.worker_process_shutdown.connect(on_process_exit, weak=False)
    signals.worker_shutdown.connect(on_shutdown, weak=False)
    log.info("serving /metrics, /healthz and /readyz on port %d", server.port)
    return server


def _database_check(settings: Settings) -> Check:
    probe = sessions.probe(settings, connect_timeout=DATABASE_CHECK_CONNECT_TIMEOUT)

    def check() -> tuple[bool, str]:
        try:
            probe()
        except SchemaMissing as missing:  # reached, but runs could not be recorded
            return False, str(missing)
        except Exception as error:  # noqa: BLE001 (any failure is the reason)
            original = getattr(error, "orig", None) or error
            reason = " ".join(str(original).split()) or type(error).__name__
            return False, f"cannot reach PostgreSQL: {reason}"
        return True, ""

    return check
