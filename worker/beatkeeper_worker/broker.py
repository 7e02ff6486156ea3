"""The broker side of publishing: one reused connection and producer, messages sent in batches.

``Publisher.publish`` sends messages through one reused kombu producer inside
``Producer.batch()``: on Redis that is one pipelined round trip per batch instead of one per
message, which is most of the difference from ``apply_async`` in a loop.

Messages go to the default exchange with the queue name as routing key. On Redis that is a
plain ``LPUSH`` onto the queue's list, skipping the per-message binding lookup (``SMEMBERS``)
a named exchange costs; on AMQP the default exchange delivers to the queue of that name. The
queue is declared once per connection the way Celery declares a missing queue, so a worker
started later finds the same queue.

This module only sends: ``beatkeeper_worker.publish`` chooses which runs go out, and
``beatkeeper_worker.messages`` what their messages say.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from celery import Celery
from celery.utils.nodenames import anon_nodename
from kombu import common, exceptions, messaging

from beatkeeper_worker.messages import Outgoing

__all__ = ["Publisher"]

BATCH_MAX = 1000
#: Bound how long a black-holed broker can stall a tick (Beat holds row locks meanwhile).
SOCKET_TIMEOUT_SECONDS = 10.0

log = logging.getLogger(__name__)


class Publisher:
    """One broker connection and producer, reused across ticks and rebuilt after an error."""

    def __init__(self, app: Celery) -> None:
        self._app = app
        self._connection: Any = None  # kombu.Connection (kombu is partly typed)
        self._producer: Any = None
        self.origin = anon_nodename()

    def publish(self, messages: Sequence[Outgoing]) -> None:
        """Send every message or raise; on error nothing is known about what arrived."""
        if not messages:
            return
        try:
            producer = self._ready_producer()
            for queue in {m.queue for m in messages}:
                common.maybe_declare(self._app.amqp.queues[queue], producer.channel)  # type: ignore[no-untyped-call]
            with producer.batch(max_size=BATCH_MAX):
                for m in messages:
                    producer.publish(
                        m.body,
                        exchange="",
                        routing_key=m.queue,
                        serializer="json",
                        headers=m.headers,
                        delivery_mode=2,
                        **m.properties,
                    )
        except BaseException:
            self.close()  # a half-broken connection is never reused
            raise

    @property
    def connection_errors(self) -> tuple[type[BaseException], ...]:
        """What the transport raises when the broker is unreachable (to retry, not crash)."""
        connection = self._connection or self._app.connection_for_write()
        errors: tuple[type[BaseException], ...] = (
            *connection.connection_errors,
            *connection.channel_errors,
            exceptions.OperationalError,  # what ensure_connection re-raises them as
            exceptions.BatchPublishError,
            OSError,
        )
        return errors

    def close(self) -> None:
        connection, self._connection, self._producer = self._connection, None, None
        if connection is not None:
            try:
                connection.collect()
            except Exception:  # closing a broken connection must not fail
                log.debug("closing the broker connection failed", exc_info=True)

    def _ready_producer(self) -> Any:
        if self._producer is None:
            options = dict(self._app.conf.broker_transport_options or {})
            connection = self._app.connection_for_write()
            if connection.transport.driver_type == "redis":
                options.setdefault("socket_timeout", SOCKET_TIMEOUT_SECONDS)
                options.setdefault("socket_connect_timeout", SOCKET_TIMEOUT_SECONDS)
                connection = self._app.connection_for_write(transport_options=options)
            connection.ensure_connection(max_retries=1)
            self._connection = connection
            self._producer = messaging.Producer(  # type: ignore[no-untyped-call]
                connection.default_channel, auto_declare=False
            )
        return self._producer
