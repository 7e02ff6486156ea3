"""Every Prometheus metric beatkeeper exports, and how a process (or a prefork pool) shows them.

Beat and the operator are one process each: their metrics live in the default registry. A
prefork worker is not: runs finish in pool processes, which Celery forks and replaces
(``max_tasks_per_child``, crashes, time limits), while only the main process serves
``/metrics``. Counting in the main
process instead was the other option, but the outcome of a run (``retrying`` or ``dead``,
the duration of its body) is decided in the pool process by run tracking, and Celery
reports nothing of it back to the parent. So a worker uses prometheus_client's
multiprocess mode: ``share_across_processes`` (called by the main process before any pool
process forks) points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh directory and makes every
value created from then on a memory-mapped file per process; ``exposition`` then sums the
files of every process, living or gone, so a counter never goes backwards when a pool
process is replaced.

prometheus_client picks its value class when it is imported, from that same variable;
``share_across_processes`` swaps it afterwards, which is only sound for values not created
yet. That is why the per-run metrics (``PER_RUN``) have labels: a labelled metric creates
its values on first ``labels()``, which happens in the pool processes, after the swap (and
the swap clears any created before it).

Per-schedule labels are bounded (``ScheduleLabels``): a fleet of 100k Schedules must not
become 100k series. ``beatkeeper_schedule_runs_total`` is labelled by schedule only when
``BEATKEEPER_METRICS_SCHEDULE_LABELS`` asks (``none``, the default, leaves
``schedule_namespace`` and ``schedule`` empty: one series per outcome), and each process
gives at most ``BEATKEEPER_METRICS_SCHEDULE_LIMIT`` label values series of their own; the
rest share ``other``.

This module must not import Celery or talk to anything.
"""

from __future__ import annotations

import os
import tempfile
import threading

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)

from beatkeeper.settings import ScheduleLabelMode

__all__ = [
    "ADMISSION_DECISIONS",
    "ADMISSION_SECONDS",
    "DUE_BACKLOG",
    "HELD_RUNS",
    "OLDEST_UNRECONCILED",
    "OPERATOR_ERRORS",
    "PER_RUN",
    "QUEUE_LENGTH",
    "RECONCILES",
    "RUNS_FINISHED",
    "RUN_DURATION",
    "SCHEDULE_RUNS",
    "SCHEDULING_LAG",
    "TICKS",
    "TICK_SECONDS",
    "ScheduleLabels",
    "count_schedule_run",
    "exposition",
    "label_schedules",
    "process_exited",
    "share_across_processes",
]

MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"

#: From a few milliseconds (a healthy Beat publishes that late) to minutes (an outage).
LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
#: An admission decision is pure CPU work: well under a millisecond to a few for a long RRULE.
ADMISSION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)

# -- Beat (one process) -------------------------------------------------------------------

TICKS = Counter("beatkeeper_ticks", "Beat ticks that reached the database and the broker.")
TICK_SECONDS = Histogram(
    "beatkeeper_tick_seconds",
    "Time a Beat tick spent planning and publishing.",
    buckets=LAG_BUCKETS,
)
SCHEDULING_LAG = Histogram(
    "beatkeeper_scheduling_lag_seconds",
    "How long after its due time each run was published to the broker.",
    buckets=LAG_BUCKETS,
)
DUE_BACKLOG = Gauge(
    "beatkeeper_due_backlog",
    "Planned and retrying runs already due but not yet published, as Beat last counted.",
    multiprocess_mode="livemax",
)
HELD_RUNS = Gauge(
    "beatkeeper_held_runs",
    "Due runs held back on purpose, as Beat last counted: behind another run of their Queue "
    "schedule (reason=queue), or out of their rateLimit's budget (reason=rateLimit).",
    ["reason"],
    multiprocess_mode="livemax",
)
QUEUE_LENGTH = Gauge(
    "beatkeeper_queue_length",
    "Messages waiting in a broker queue (Redis or RabbitMQ), as Beat last counted.",
    ["queue"],
    multiprocess_mode="livemax",
)

# -- workers (every pool process) ---------------------------------------------------------

RUNS_FINISHED = Counter(
    "beatkeeper_runs_finished",
    "Attempts finished by workers, by the state they left the run in.",
    ["state"],
)
RUN_DURATION = Histogram(
    "beatkeeper_run_duration_seconds",
    "Time the task body of a run took, by the state it left the run in.",
    ["state"],
    buckets=DURATION_BUCKETS,
)

# -- Beat and workers: outcomes of runs, by schedule when asked ----------------------------

SCHEDULE_RUNS = Counter(
    "beatkeeper_schedule_runs",
    "Runs that did not run or ran out of attempts, and runs held back, by outcome: missed, "
    "skipped and expired (Beat, when planned or when their turn to publish came), throttled "
    "(Beat, each time a due run was held back by its rateLimit's budget), dead (workers). "
    "schedule_namespace and schedule are empty unless BEATKEEPER_METRICS_SCHEDULE_LABELS "
    "asks; past BEATKEEPER_METRICS_SCHEDULE_LIMIT values per process they are 'other'.",
    ["outcome", "schedule_namespace", "schedule"],
)
PER_RUN = (RUNS_FINISHED, RUN_DURATION, SCHEDULE_RUNS)

OTHER = "other"


class ScheduleLabels:
    """The (namespace, schedule) labels a schedule's series get: bounded in number."""

    def __init__(self, mode: ScheduleLabelMode = "none", limit: int = 500) -> None:
        self.mode = mode
        self.limit = limit
        self._seen: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def __call__(self, namespace: str, name: str) -> tuple[str, str]:
        if self.mode == "none":
            return "", ""
        labels = (namespace, name if self.mode == "schedule" else "")
        with self._lock:
            if labels in self._seen:
                return labels
            if len(self._seen) < self.limit:
                self._seen.add(labels)
                return labels
        return OTHER, OTHER if self.mode == "schedule" else ""


_schedule_labels = ScheduleLabels()


def label_schedules(mode: ScheduleLabelMode, limit: int) -> None:
    """Label ``SCHEDULE_RUNS`` by ``mode`` from now on, with at most ``limit`` values."""
    global _schedule_labels  # noqa: PLW0603 (one setting per process, set at start-up)
    _schedule_labels = ScheduleLabels(mode, limit)


def count_schedule_run(outcome: str, namespace: str, name: str, runs: int = 1) -> None:
    """Count ``runs`` runs of one schedule that ended (or were held) with ``outcome``."""
    SCHEDULE_RUNS.labels(outcome, *_schedule_labels(namespace, name)).inc(runs)


# -- the operator (one process) -----------------------------------------------------------

RECONCILES = Counter(
    "beatkeeper_operator_reconciles",
    "Schedule reconciles finished, by outcome (the Ready condition's reason: Scheduled, "
    "Suspended, Finished, PausedAfterFailures, InvalidSpec, TaskNotAllowed, "
    "DatabaseUnavailable, Error).",
    ["outcome"],
)
OPERATOR_ERRORS = Counter(
    "beatkeeper_operator_errors",
    "Operator handler attempts that failed and will be retried, by what failed "
    "(DatabaseUnavailable, or the exception's type).",
    ["error"],
)
ADMISSION_DECISIONS = Counter(
    "beatkeeper_admission_decisions",
    "Schedule create/update requests the validating webhook answered, by decision "
    "(allowed, denied) and reason (InvalidSpec, TaskNotAllowed; empty when allowed).",
    ["decision", "reason"],
)
ADMISSION_SECONDS = Histogram(
    "beatkeeper_admission_seconds",
    "Time the validating webhook took to decide on one Schedule, by decision.",
    ["decision"],
    buckets=ADMISSION_BUCKETS,
)
OLDEST_UNRECONCILED = Gauge(
    "beatkeeper_operator_oldest_unreconciled_seconds",
    "Age of the oldest Schedule change the operator has started on but not yet reconciled "
    "(in progress or being retried); 0 when every change it has started on is reconciled.",
    multiprocess_mode="livemax",
)


def share_across_processes() -> str:
    """Count from now on in files every forked process shares; returns their directory.

    Call it in a worker's main process before the pool forks. A directory already named by
    ``PROMETHEUS_MULTIPROC_DIR`` is kept (its owner cleans it); otherwise a fresh one is made.
    """
    directory = os.environ.get(MULTIPROC_DIR) or tempfile.mkdtemp(prefix="beatkeeper-metrics-")
    os.environ[MULTIPROC_DIR] = directory
    values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]
    for metric in PER_RUN:
        metric.clear()  # values made before the swap would stay private to each process
    return directory


def process_exited(pid: int) -> None:
    """Forget the live gauges of a pool process that exited (its counters stay counted)."""
    if os.environ.get(MULTIPROC_DIR):
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def exposition() -> tuple[bytes, str]:
    """The metrics of this process, or of every process sharing its directory; content type."""
    registry = REGISTRY
    if os.environ.get(MULTIPROC_DIR):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return generate_latest(registry), CONTENT_TYPE_LATEST
