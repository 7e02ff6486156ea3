"""The brokers Beat publishes to: one port (``Broker``), one adapter per broker.

``for_app`` is the one place that chooses an adapter, by the transport kombu picks for the
app's broker URL (so every alias kombu knows, ``rediss://`` or ``pyamqp://``, goes where it
belongs). What each broker does differently is in its adapter's docstring; what every
adapter must do is in ``brokers.port`` and in the contract tests run over both.
"""

from __future__ import annotations

from celery import Celery

from beatkeeper.settings import SettingsError, mask_url
from beatkeeper_worker.brokers.base import KombuBroker
from beatkeeper_worker.brokers.port import (
    HIGHEST_PRIORITY,
    LOWEST_PRIORITY,
    Broker,
    BrokerUnavailable,
)
from beatkeeper_worker.brokers.rabbitmq import MAX_PRIORITY, RabbitMQBroker
from beatkeeper_worker.brokers.redis import RedisBroker

__all__ = [
    "HIGHEST_PRIORITY",
    "LOWEST_PRIORITY",
    "MAX_PRIORITY",
    "Broker",
    "BrokerUnavailable",
    "for_app",
]

_ADAPTERS: dict[str, type[KombuBroker]] = {"redis": RedisBroker, "amqp": RabbitMQBroker}


def for_app(app: Celery) -> Broker:
    """The adapter for ``app``'s broker; it connects when first used."""
    driver = app.connection_for_write().transport.driver_type
    adapter = _ADAPTERS.get(driver)
    if adapter is None:
        url = mask_url(str(app.conf.broker_url))
        raise SettingsError(f"Beat publishes to Redis or RabbitMQ only, not to {url}")
    return adapter(app)
