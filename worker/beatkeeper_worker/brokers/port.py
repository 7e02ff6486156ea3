"""What beatkeeper needs of a message broker, whichever it is: the port its adapters fill.

Beat publishes runs in batches, counts a queue (the ``beatkeeper_queue_length`` gauge) and,
where the broker can lose a message it already took, asks whether a queue is empty before it
sends a run again (``Broker.loses_messages``). Everything a broker does differently lives in
one adapter per broker (``brokers.redis``, ``brokers.rabbitmq``); Beat never asks which
broker it talks to, only what the broker can do.

Priorities mean the same on every broker: a run's ``priority`` 0 (or none) is served first
and 9 last, the order Celery's Redis transport has always used, so existing Redis
deployments keep theirs. RabbitMQ orders the other way round: its adapter sends it 9 minus
the priority, to queues declared with ``x-max-priority``. A worker serves priorities only
among the messages waiting in its queue, on either broker.

An unreachable or lost broker is always ``BrokerUnavailable``, one line naming the broker and
the reason, never the transport's own exception types.

This module must not import a broker client: adapters do.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import ClassVar

from beatkeeper_worker.messages import Outgoing

__all__ = ["HIGHEST_PRIORITY", "LOWEST_PRIORITY", "Broker", "BrokerUnavailable"]

#: Served first: also what a run without a ``priority`` gets.
HIGHEST_PRIORITY = 0
#: Served last.
LOWEST_PRIORITY = 9


class BrokerUnavailable(Exception):  # noqa: N818 (says what happened, as DatabaseUnavailable)
    """The broker cannot be reached, or was lost during an operation.

    After it, nothing is known about which messages of the batch arrived: Beat keeps the
    runs unmarked and publishes them again, which the worker turns into one run.
    """


class Broker(abc.ABC):
    """One connection to one broker, reused until an error, for one Beat replica."""

    #: The broker's name for log lines and errors ("Redis", "RabbitMQ").
    name: ClassVar[str]
    #: Whether a message the broker took can vanish before a worker acknowledges it (so Beat
    #: must look for runs enqueued long ago and never started, and send them again).
    loses_messages: ClassVar[bool]
    #: The node name the messages say they come from (Celery's ``origin`` header).
    origin: str

    @abc.abstractmethod
    def publish(self, messages: Sequence[Outgoing]) -> None:
        """Send every message or raise ``BrokerUnavailable``; nothing is sent twice on success."""

    @abc.abstractmethod
    def queue_length(self, queue: str) -> int:
        """Messages waiting in ``queue`` (every priority), not those a worker holds; 0 for a
        queue that does not exist. A snapshot: RabbitMQ may count a message published a
        moment ago only a moment later."""

    def is_empty(self, queue: str) -> bool:
        """Whether no message waits in ``queue`` now."""
        return self.queue_length(queue) == 0

    @abc.abstractmethod
    def close(self) -> None:
        """Drop the connection; the next call connects again."""
