"""Messages a worker cannot read: dropped with one line, and the worker lives on.

Anyone who can write to the broker can put bytes on a queue that are not a message: an
envelope that is not JSON, a body that is not base64, a body that is not JSON, headers
missing their keys. Celery 5.7 and kombu raise out of the consumer's event loop for most of
these, and the worker stops with "Unrecoverable error", taking every run it holds with it.

Such a message is **dropped** (acknowledged, not requeued and not dead-lettered): it cannot
be run, nor even tied to a run, so a dead-letter queue would only keep the bytes. A genuine
run whose message was mangled is not lost: Beat publishes a run again once it has waited
``BEATKEEPER_REDELIVER_AFTER`` unstarted. The one line says which queue (when known), why,
the size and the first bytes, so the sender can be found.

Two places need a guard, installed by ``DropUnreadable``, a consumer bootstep:

- Celery's task handler (every transport): the consumer's ``create_task_handler`` is wrapped
  so an error reading a message acknowledges it with one line; ``on_decode_error`` (a body
  that is not JSON) logs one line instead of a critical traceback.
- kombu's Redis channel parses the envelope and decodes the base64 body before Celery sees
  anything, and the message has already been popped from its list: its ``BRPOP`` reader is
  wrapped so such an error drops the message with one line.

This module must not touch the database.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from celery import bootsteps

__all__ = ["DropUnreadable"]

logger = logging.getLogger("beatkeeper.worker")

#: What reading a malformed message raises (json, binascii and unicode errors are
#: ValueErrors); connection errors are none of these and still reach kombu's recovery.
UNREADABLE = (ValueError, LookupError, TypeError, AttributeError)
_SHOWN_BYTES = 80
_GUARDED = "_beatkeeper_poison_guard"


class DropUnreadable(bootsteps.StartStopStep):  # type: ignore[misc]  # untyped Celery
    """Consumer bootstep: install the guards on every (re)connection of the consumer."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def start(self, c: Any) -> None:
        c.on_decode_error = functools.partial(_on_decode_error, c)
        if not getattr(c.create_task_handler, _GUARDED, False):
            c.create_task_handler = _guarded_factory(c.create_task_handler)
        handlers: dict[str, Any] = getattr(c.task_consumer.channel, "handlers", None) or {}
        redis_read = handlers.get("BRPOP")
        if redis_read is not None and not getattr(redis_read, _GUARDED, False):
            handlers["BRPOP"] = _guarded_redis_read(redis_read)  # kombu's Redis channel


def _on_decode_error(c: Any, message: Any, error: BaseException) -> None:
    del c
    _log_dropped(message, f"cannot decode its body: {_described(error)}")
    message.ack()


def _guarded_factory(create: Callable[..., Callable[[Any], Any]]) -> Callable[..., Any]:
    @functools.wraps(create)
    def create_guarded(*args: Any, **kwargs: Any) -> Callable[[Any], Any]:
        on_message = create(*args, **kwargs)

        def on_task_received(message: Any) -> Any:
            try:
                return on_message(message)
            except UNREADABLE as error:
                _log_dropped(message, f"cannot read it: {_described(error)}")
                if not message.acknowledged:
                    message.ack()
                return None

        return on_task_received

    setattr(create_guarded, _GUARDED, True)
    return create_guarded


def _guarded_redis_read(read: Callable[[], Any]) -> Callable[[], Any]:
    @functools.wraps(read)
    def read_guarded() -> Any:
        try:
            return read()
        except UNREADABLE as error:
            # Popped already and never seen by Celery: nothing to acknowledge.
            logger.error("poison message dropped from Redis: not a message: %s", _described(error))  # noqa: TRY400
            return None

    setattr(read_guarded, _GUARDED, True)
    return read_guarded


def _log_dropped(message: Any, why: str) -> None:
    info = getattr(message, "delivery_info", None) or {}
    queue = info.get("routing_key") or "?"
    body = getattr(message, "body", b"") or b""
    size = len(body)
    logger.error(
        "poison message dropped from queue %s: %s (%d bytes: %r)",
        queue,
        why,
        size,
        body[:_SHOWN_BYTES],
    )


def _described(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
