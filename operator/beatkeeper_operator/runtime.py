"""What one running operator holds: its configuration, engine, caches and health flags.

``OperatorConfig`` is everything the operator is told (built from the environment by
``config_from_env``, or directly by tests and benchmarks and handed to kopf as ``memo``);
``Runtime`` is what it builds from that at start-up and shares between the handlers and
the status refresher. No I/O here beyond building the (lazy) engine.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import hashlib
import json
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import kopf

from beatkeeper.policy import Policy, load_policy
from beatkeeper.settings import Settings, mask_url
from beatkeeper.store import DatabaseUnavailable, Engine, make_engine
from beatkeeper_operator.kube import EventLimiter
from beatkeeper_operator.progress import Progress
from beatkeeper_operator.webhook import WebhookConfig, webhook_config_from_env

__all__ = [
    "RECONCILE_THREADS",
    "STATEMENT_TIMEOUT",
    "OperatorConfig",
    "Runtime",
    "Served",
    "config_from_env",
    "configure_collector",
    "configure_kopf",
]

FINALIZER = "beatkeeper.io/finalizer"
# kopf leaves its own prefix out of the essence it diffs, so it must not be the prefix
# of the user-facing annotations (beatkeeper.io/trigger, beatkeeper.io/backfill).
PREFIX = "operator.beatkeeper.io"
#: Seconds one statement of the operator may run (PostgreSQL's statement_timeout).
STATEMENT_TIMEOUT = 30.0
#: Threads reconciles run on (``Runtime.reconciler``).
RECONCILE_THREADS = 4
T = TypeVar("T")


@dataclass(frozen=True)
class OperatorConfig:
    """What the operator is told: settings, tenancy policy and loop timings."""

    settings: Settings
    policy: Policy = field(default_factory=Policy)
    refresh_interval: float = 2.0  # seconds between status polls of the database
    event_interval: float = 60.0  # seconds between Events of one reason on one schedule
    health_port: int | None = None  # /readyz and /metrics; None: not served
    max_backoff: float = 60.0  # seconds, for retries while the database is down
    webhook: WebhookConfig | None = None  # the validating webhook; None: not served
    database_timeout: float = 45.0  # seconds a database call may take before it counts as down
    sweep_interval: float = 300.0  # seconds between sweeps for rows whose resource is gone


@dataclass
class Served:
    """A Schedule this operator serves, and its status as the operator last saw or wrote it.

    The handlers record it on every reconcile (so a restart's resume handlers record every
    Schedule) and the refresher after each status patch; only the operator writes a
    Schedule's status, so this is what the resource shows without watching it again.
    """

    namespace: str
    name: str
    generation: int | None
    status: dict[str, Any]


@dataclass
class Runtime:
    """Shared by the handlers and the refresher of one operator run."""

    config: OperatorConfig
    engine: Engine
    kopf_settings: kopf.OperatorSettings
    limiter: EventLimiter
    #: Every Schedule the handlers reconciled, by uid, with the status it now shows.
    served: dict[uuid.UUID, Served] = field(default_factory=dict)
    #: The ``schedules.updated_at`` the refresher last loaded per schedule uid (only those
    #: inside its look-back overlap), so a row is not re-read on every poll of the overlap.
    loaded_versions: dict[uuid.UUID, Any] = field(default_factory=dict)
    #: Reconciles counted and changes still being retried, for /metrics.
    progress: Progress = field(default_factory=Progress)
    #: Runs the refresher reported dead or missed within its overlap, by id, with the
    #: ``runs.updated_at`` it reported, so the overlap does not report them twice.
    noted_runs: dict[uuid.UUID, Any] = field(default_factory=dict)
    database_ok: bool = True
    started: bool = False
    #: The threads blocking store work runs on, apart from the event loop's default ones: a
    #: call given up on (``in_database``) keeps its thread until the socket gives up too.
    executor: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(16, thread_name_prefix="database")
    )
    #: Reconciles (validation included) get threads of their own, so a burst of costly
    #: specs cannot hold up the status refresher's database work.
    reconciler: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(
            RECONCILE_THREADS, thread_name_prefix="reconcile"
        )
    )

    @classmethod
    def build(cls, config: OperatorConfig, kopf_settings: kopf.OperatorSettings) -> Runtime:
        engine = make_engine(
            config.settings,
            application_name="beatkeeper-operator",
            statement_timeout=STATEMENT_TIMEOUT,
            pool_size=8,
            max_overflow=4,
        )
        limiter = EventLimiter(interval=config.event_interval)
        return cls(config=config, engine=engine, kopf_settings=kopf_settings, limiter=limiter)

    async def in_database(
        self,
        work: Callable[..., T],
        /,
        *args: Any,
        executor: ThreadPoolExecutor | None = None,
        **kwargs: Any,
    ) -> T:
        """``work(*args, **kwargs)`` on a database thread, given up after ``database_timeout``.

        ``executor``: the threads to run it on (default ``self.executor``).

        A partitioned network leaves sockets open and unanswered; the engine's keepalives
        and ``tcp_user_timeout`` end that in about half a minute, and until then nothing
        but this bound stops a handler or the refresher waiting. Giving up raises
        ``DatabaseUnavailable``, which makes the operator unready and the handler retry.
        """
        loop = asyncio.get_running_loop()
        threads = executor or self.executor
        call = loop.run_in_executor(threads, functools.partial(work, *args, **kwargs))
        timeout = self.config.database_timeout
        try:
            return await asyncio.wait_for(call, timeout)
        except TimeoutError:
            url = mask_url(self.config.settings.require_database_url())
            raise DatabaseUnavailable(
                url, f"the database did not answer within {timeout:g}s"
            ) from None


def config_from_env() -> OperatorConfig:
    """The configuration a deployed operator reads (``SettingsError``/``PolicyError``)."""
    settings = Settings.from_env()
    return OperatorConfig(
        settings=settings,
        policy=load_policy(settings.policy_file),
        health_port=settings.metrics_port,
        webhook=webhook_config_from_env(),
    )


def configure_kopf(settings: kopf.OperatorSettings, *, namespaced: bool) -> None:
    """Brand kopf's bookkeeping with beatkeeper.io and keep it off the status.

    A namespaced operator (``namespaced``: BEATKEEPER_NAMESPACES lists namespaces) turns
    off kopf's cluster scanning: it would watch CustomResourceDefinitions and Namespaces
    cluster-wide, which the namespaced Roles do not allow (403s in the log and a
    fallback). The listed namespaces must therefore exist when the operator starts.
    """
    settings.scanning.disabled = namespaced
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
    settings.persistence.diffbase_storage = DigestDiffBaseStorage(
        prefix=PREFIX, key="last-handled-configuration"
    )
    # kopf's own per-handler Events ("Handler succeeded") would cost a request per change;
    # beatkeeper posts the Events a user should notice itself (kube.post_event).
    settings.posting.enabled = False
    settings.peering.standalone = True
    settings.queueing.error_delays = [1, 2, 5, 10, 30, 60]


class DigestDiffBaseStorage(kopf.AnnotationsDiffBaseStorage):
    """kopf's record of the last handled spec, kept as a digest instead of a copy.

    kopf's own storage copies the whole spec into an annotation: with kubectl's
    last-applied copy, a spec over about 128 KB pushed the annotations past the API
    server's 256 KiB and every patch of the Schedule (the InvalidSpec status too) was
    refused. The handlers reconcile the whole resource and never read kopf's diff, so a
    digest is enough to tell "changed" from "unchanged". A full copy written by an older
    operator is still read as one.
    """

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: Any) -> None:
        for key in self.make_keys(self.key, body=body):
            patch.metadata.annotations[key] = _digest(essence)
        self._store_marker(prefix=self.prefix, patch=patch, body=body)

    def fetch(self, *, body: kopf.Body) -> Any:
        for key in self.make_keys(self.key, body=body):
            stored = body.metadata.annotations.get(key)
            if stored is None:
                continue
            if stored.startswith("{"):
                return json.loads(stored)
            current = self.build(body=body)
            return current if _digest(current) == stored else {"digest": stored}
        return None


def _digest(essence: Any) -> str:
    canonical = json.dumps(essence, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def configure_collector() -> None:
    """Keep Python's cyclic garbage collector off state that lives as long as the process.

    The operator holds kopf's memory of every Schedule for its whole life, and every watch
    event allocates thousands of short-lived containers, so with the default thresholds
    full collections kept traversing that heap: a sixth of the CPU while 5,000 Schedules
    were created. Call it once, before ``kopf.run``, in the process that runs the operator:
    what was loaded at start-up is frozen (never traversed again) and young collections
    run every 10,000 allocations instead of 700.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 100)
