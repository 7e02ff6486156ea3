"""What one running operator holds: its configuration, engine, caches and health flags.

``OperatorConfig`` is everything the operator is told (built from the environment by
``config_from_env``, or directly by tests and benchmarks and handed to kopf as ``memo``);
``Runtime`` is what it builds from that at start-up and shares between the handlers and
the status refresher. No I/O here beyond building the (lazy) engine.
"""

from __future__ import annotations

import gc
import os
import uuid
from dataclasses import dataclass, field
from typing import Any

import kopf
from sqlalchemy import Engine

from beatkeeper.settings import Settings
from beatkeeper.store.engine import make_engine
from beatkeeper_operator.kube import EventLimiter
from beatkeeper_operator.policy import Policy, load_policy

__all__ = [
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


@dataclass(frozen=True)
class OperatorConfig:
    """What the operator is told: settings, tenancy policy and loop timings."""

    settings: Settings
    policy: Policy = field(default_factory=Policy)
    refresh_interval: float = 2.0  # seconds between status polls of the database
    event_interval: float = 60.0  # seconds between Events of one reason on one schedule
    health_port: int | None = None  # /readyz and /metrics; None: not served
    max_backoff: float = 60.0  # seconds, for retries while the database is down


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
    database_ok: bool = True
    started: bool = False

    @classmethod
    def build(cls, config: OperatorConfig, kopf_settings: kopf.OperatorSettings) -> Runtime:
        engine = make_engine(
            config.settings, application_name="beatkeeper-operator", pool_size=8, max_overflow=4
        )
        limiter = EventLimiter(interval=config.event_interval)
        return cls(config=config, engine=engine, kopf_settings=kopf_settings, limiter=limiter)


def config_from_env() -> OperatorConfig:
    """The configuration a deployed operator reads (``SettingsError``/``PolicyError``)."""
    settings = Settings.from_env()
    policy_file = (
        getattr(settings, "policy_file", None)
        or os.environ.get("BEATKEEPER_POLICY_FILE", "").strip()
    )
    return OperatorConfig(
        settings=settings,
        policy=load_policy(policy_file or None),
        health_port=settings.metrics_port,
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
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=PREFIX, key="last-handled-configuration"
    )
    # kopf's own per-handler Events ("Handler succeeded") would cost a request per change;
    # beatkeeper posts the Events a user should notice itself (kube.post_event).
    settings.posting.enabled = False
    settings.peering.standalone = True
    settings.queueing.error_delays = [1, 2, 5, 10, 30, 60]


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
