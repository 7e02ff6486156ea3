"""The Redis adapter: kombu's Redis transport, and what it can lose.

Priorities: kombu keeps a queue's messages in one list per priority step (0-2, 3-5, 6-8 and
9, the first plain, the others suffixed) and a worker pops them in that order, so a run's
``priority`` goes out as it is: 0 first, 9 last, in four steps.

Lost messages: a worker pops a message and only then records it as unacknowledged, so a
worker killed (or a Redis restarted) in between drops it for good; and a message a stopped
worker held comes back only after the visibility timeout (an hour unless configured). So
Redis ``loses_messages``: Beat sends again a run enqueued long ago and never started once its
queue is empty (``BEATKEEPER_REDELIVER_AFTER``).

Socket timeouts bound how long a black-holed Redis can stall a tick: Beat holds row locks
meanwhile.
"""

from __future__ import annotations

from typing import Any, ClassVar

from kombu import exceptions

from beatkeeper_worker.brokers.base import KombuBroker

__all__ = ["SOCKET_TIMEOUT_SECONDS", "RedisBroker"]

SOCKET_TIMEOUT_SECONDS = 10.0


class RedisBroker(KombuBroker):
    name: ClassVar[str] = "Redis"
    loses_messages: ClassVar[bool] = True
    missing_queue: ClassVar[tuple[type[BaseException], ...]] = (exceptions.ChannelError,)
    missing_queue_closes_channel: ClassVar[bool] = False

    def transport_options(self) -> dict[str, Any]:
        options = super().transport_options()
        options.setdefault("socket_timeout", SOCKET_TIMEOUT_SECONDS)
        options.setdefault("socket_connect_timeout", SOCKET_TIMEOUT_SECONDS)
        return options
