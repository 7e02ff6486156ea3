"""The RabbitMQ (AMQP 0-9-1) adapter: kombu's py-amqp transport.

Priorities: RabbitMQ orders a queue by priority only when the queue was declared with
``x-max-priority`` (the app's ``task_queue_max_priority``, which beatkeeper's app and
``tracking.install`` set, so Beat and every worker declare the same queue), and serves the
highest number first. A run's ``priority`` p goes out as ``9 - p``, and a run without one as
9, so the order is the one Redis gives: 0 first, 9 last.

Lost messages: RabbitMQ keeps every delivered message until the worker acknowledges it, and
delivers it again as soon as that worker's channel closes (killed, restarted, cut off). It
does not lose a message it took, so Beat never sends a run again for want of one.
"""

from __future__ import annotations

from typing import Any, ClassVar

import amqp.exceptions  # type: ignore[import-untyped]  # py-amqp, kombu's AMQP client

from beatkeeper_worker.brokers.base import KombuBroker
from beatkeeper_worker.brokers.port import HIGHEST_PRIORITY, LOWEST_PRIORITY

__all__ = ["MAX_PRIORITY", "RabbitMQBroker"]

#: ``x-max-priority`` of every queue: one AMQP priority per beatkeeper priority.
MAX_PRIORITY = LOWEST_PRIORITY - HIGHEST_PRIORITY


class RabbitMQBroker(KombuBroker):
    name: ClassVar[str] = "RabbitMQ"
    loses_messages: ClassVar[bool] = False
    missing_queue: ClassVar[tuple[type[BaseException], ...]] = (amqp.exceptions.NotFound,)
    missing_queue_closes_channel: ClassVar[bool] = True

    def properties(self, properties: dict[str, Any]) -> dict[str, Any]:
        priority = properties.get("priority")
        wanted = HIGHEST_PRIORITY if priority is None else int(priority)
        return {**properties, "priority": MAX_PRIORITY - (wanted - HIGHEST_PRIORITY)}
