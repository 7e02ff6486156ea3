"""Publishing and counting through kombu, which both adapters share.

``KombuBroker.publish`` sends messages through one reused kombu producer inside
``Producer.batch()``: on Redis that is one pipelined round trip per batch instead of one per
message, which is most of the difference from ``apply_async`` in a loop.

Messages go to the default exchange with the queue name as routing key. On Redis that is a
plain ``LPUSH`` onto the queue's list, skipping the per-message binding lookup (``SMEMBERS``)
a named exchange costs; on AMQP the default exchange delivers to the queue of that name. The
queue is declared once per connection the way Celery declares a missing queue (with the
app's ``task_queue_max_priority``), so a worker started later finds the same queue.

This module only sends and counts: which runs go out is ``beatkeeper_worker.publish``'s
business, what their messages say ``beatkeeper_worker.messages``'.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

from celery import Celery
from celery.utils.nodenames import anon_nodename
from kombu import common, exceptions, messaging

from beatkeeper.settings import mask_url
from beatkeeper_worker.brokers.port import Broker, BrokerUnavailable
from beatkeeper_worker.messages import Outgoing

__all__ = ["BATCH_MAX", "KombuBroker"]

BATCH_MAX = 1000

log = logging.getLogger(__name__)


class KombuBroker(Broker):
    """One kombu connection and producer, reused across ticks and rebuilt after an error."""

    #: What a passive declaration of a queue that does not exist raises.
    missing_queue: ClassVar[tuple[type[BaseException], ...]]
    #: Whether the broker closes the channel that asked for a missing queue (AMQP does).
    missing_queue_closes_channel: ClassVar[bool]

    def __init__(self, app: Celery) -> None:
        self._app = app
        self._connection: Any = None  # kombu.Connection (kombu is partly typed)
        self._producer: Any = None
        self._counter: Any = None  # the channel queues are counted on (opening one costs ms)
        self.origin = anon_nodename()
        self.url = mask_url(str(app.conf.broker_url))

    def publish(self, messages: Sequence[Outgoing]) -> None:
        if not messages:
            return
        with self._reporting("publish to"):
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
                        **self.properties(m.properties),
                    )

    def properties(self, properties: dict[str, Any]) -> dict[str, Any]:
        """The message properties as this broker must receive them (priorities differ)."""
        return properties

    def queue_length(self, queue: str) -> int:
        with self._reporting(f"count queue {queue!r} on"):
            channel = self._counting_channel()
            try:
                declared = channel.queue_declare(queue=queue, passive=True)
            except self.missing_queue:
                if self.missing_queue_closes_channel:
                    self._counter = None
                    _quietly_close(channel)
                return 0
            return int(declared.message_count)

    def close(self) -> None:
        connection, self._connection, self._producer = self._connection, None, None
        self._counter = None  # closed with its connection
        if connection is not None:
            try:
                connection.collect()
            except Exception:  # closing a broken connection must not fail
                log.debug("closing the broker connection failed", exc_info=True)

    def transport_options(self) -> dict[str, Any]:
        """kombu transport options for this broker, on top of the app's own."""
        return dict(self._app.conf.broker_transport_options or {})

    def _ready_producer(self) -> Any:
        if self._producer is None:
            connection = self._app.connection_for_write(transport_options=self.transport_options())
            connection.ensure_connection(max_retries=1)
            self._connection = connection
            self._producer = messaging.Producer(  # type: ignore[no-untyped-call]
                connection.default_channel, auto_declare=False
            )
        return self._producer

    def _counting_channel(self) -> Any:
        if self._counter is None:
            self._ready_producer()
            self._counter = self._connection.channel()
        return self._counter

    @contextlib.contextmanager
    def _reporting(self, doing: str) -> Iterator[None]:
        """Close the connection on any error (a half-broken one is never reused), and raise
        what the transport raises for a lost broker as ``BrokerUnavailable``."""
        try:
            yield
        except BaseException as error:
            self.close()
            if not isinstance(error, self._errors()):
                raise
            reason = " ".join(str(error).split()) or type(error).__name__
            raise BrokerUnavailable(
                f"cannot {doing} {self.name} at {self.url}: {reason}"
            ) from error

    def _errors(self) -> tuple[type[BaseException], ...]:
        connection = self._app.connection_for_write()  # not connected: only its error types
        return (
            *connection.connection_errors,
            *connection.channel_errors,
            exceptions.OperationalError,  # what ensure_connection re-raises them as
            exceptions.BatchPublishError,
            OSError,
        )


def _quietly_close(channel: Any) -> None:
    try:
        channel.close()
    except Exception:  # a channel the broker closed (its 404) is already gone
        log.debug("closing a counting channel failed", exc_info=True)
