"""The Celery app of the data plane, configured from ``BEATKEEPER_*`` settings and nothing else.

``celery -A beatkeeper_worker worker`` and ``celery -A beatkeeper_worker beat -S
beatkeeper_worker.beat:DatabaseScheduler`` both load ``app`` from here. Its configuration is
read lazily, when Celery first asks for it, so importing this module never fails; a missing
or malformed ``BEATKEEPER_BROKER_URL`` or ``BEATKEEPER_DATABASE_URL`` then stops the process
with one line naming the variable instead of a traceback. Tests and tools that already hold
a ``Settings`` call ``make_app(settings)``.

What the configuration pins, and why: JSON only (invariant 5: pickle is refused); no result
backend (runs are recorded in PostgreSQL); late acknowledgement and one prefetched message
so a worker killed mid-run leaves its message to be redelivered (invariant 2); queues
declared with ``x-max-priority`` so RabbitMQ orders runs by priority as Redis does.

Logging: the app's ``log`` is ``Logging``, which hands Celery's logging set-up (in Beat, in
the worker's main process and again in each pool process) to ``beatkeeper.logging.configure``
instead, so Celery's lines and ours come out in one format (``BEATKEEPER_LOG_FORMAT``) at
``BEATKEEPER_LOG_LEVEL``. It is this app's class, not a ``setup_logging`` signal receiver:
a signal would take over the logging of every Celery app in the process, including a user's
own app that merely installed run tracking.

This module must not connect to anything at import time.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.app import log as celery_log

from beatkeeper import logging as beatkeeper_logging
from beatkeeper.settings import Settings, SettingsError
from beatkeeper_worker import brokers

__all__ = ["SETTINGS_KEY", "Logging", "app", "configuration", "make_app", "settings_of"]

#: Where the app keeps its ``Settings`` (the Beat scheduler reads the database URL there).
SETTINGS_KEY = "beatkeeper_settings"


def configuration(settings: Settings) -> dict[str, Any]:
    """Celery configuration for ``settings`` (the broker URL must be set)."""
    return {
        "broker_url": settings.require_broker_url(),
        "task_serializer": "json",
        "accept_content": ["json"],
        "result_serializer": "json",
        "result_backend": None,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        # Queues ordered by priority on RabbitMQ too (``beatkeeper_worker.brokers``).
        "task_queue_max_priority": brokers.MAX_PRIORITY,
        "worker_prefetch_multiplier": 1,
        "broker_connection_retry_on_startup": True,
        # Flower shows workers and tasks from these events; without them it shows none.
        "worker_send_task_events": True,
        "imports": list(settings.imports),
        "enable_utc": True,
        "timezone": "UTC",
        SETTINGS_KEY: settings,
    }


def make_app(settings: Settings | None = None) -> Celery:
    """The beatkeeper Celery app; without ``settings`` it reads the environment when first used."""
    # Not the current app: a user's module that imports ``beatkeeper_worker.tracking`` after
    # making its own app keeps that app current, so its ``@shared_task``s stay bound to it.
    # ``celery -A beatkeeper_worker worker`` makes this app current itself.
    celery_app = Celery(
        "beatkeeper", include=["beatkeeper_worker.tasks"], log=Logging, set_as_current=False
    )
    if settings is None:
        celery_app.add_defaults(_from_environment)
    else:
        celery_app.add_defaults(configuration(settings))
    # Imported here: tracking may import this module for ``app``.
    from beatkeeper_worker import tracking  # noqa: PLC0415

    tracking.install(celery_app)
    return celery_app


def settings_of(celery_app: Celery) -> Settings:
    """The ``Settings`` an app was made from."""
    settings = celery_app.conf.get(SETTINGS_KEY)
    if not isinstance(settings, Settings):
        raise TypeError("this Celery app was not made by beatkeeper_worker.app.make_app")
    return settings


class Logging(celery_log.Logging):  # type: ignore[misc]  # celery has no type hints
    """Celery's logging set-up for this app, done by ``beatkeeper.logging.configure``."""

    def setup_logging_subsystem(self, *_args: Any, **_kwargs: Any) -> None:
        if self.already_setup:
            return
        celery_log.Logging._setup = True
        beatkeeper_logging.configure(settings_of(self.app))
        # Returns nothing, as Celery's own does: ``setup`` then still redirects print() and
        # stray stderr output of task bodies into logging, where they get the run's fields.


def _from_environment() -> dict[str, Any]:
    # The database URL is checked by the roles that use it (Beat, run tracking), so
    # Flower and other broker-only tools start with the broker URL alone.
    try:
        return configuration(Settings.from_env())
    except SettingsError as error:
        # Raised from inside Celery's start-up: SystemExit prints one line, no traceback.
        raise SystemExit(f"beatkeeper: {error}") from None


app = make_app()
