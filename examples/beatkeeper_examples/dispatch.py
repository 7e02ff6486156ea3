"""Notifications leave through a ``Sender``; the examples ship only ``LocalSink``.

Every notification is first a committed row in ``notifications`` (the outbox), and only
then handed to the sender by ``deliver_pending``, which marks it ``dispatched_at``. A
crash or a failed commit therefore never loses one: the row is either not there (nothing
was promised) or there undelivered, and the next run delivers it. The price is at least
once: a worker killed between the send and the mark sends it again, which is why a real
sender should pass ``Notification.id`` on as an idempotency key. The rows stay locked while
they are sent, so keep a real sender's timeout short: ``limit`` bounds how long.

``LocalSink`` keeps what it was sent in memory and logs one line per notification, so the
examples make no network calls; tests read ``sink().sent``, or install a failing sender
with ``use_sender``.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from sqlalchemy import Engine, select, update

from beatkeeper_examples import tables

__all__ = [
    "LocalSink",
    "Notification",
    "Sender",
    "deliver_pending",
    "sender",
    "use_sender",
]

#: A notification whose delivery failed this often is left undelivered, with its error.
MAX_ATTEMPTS = 5
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Notification:
    id: int
    user_id: int
    kind: str
    link: str
    title: str
    body: str


class Sender(Protocol):
    def send(self, notification: Notification) -> None:
        """Deliver ``notification`` (push, e-mail, ...) or raise."""


@dataclass
class LocalSink:
    """Delivers nowhere: remembers the last ``keep`` notifications and logs each."""

    keep: int = 1000
    sent: list[Notification] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def send(self, notification: Notification) -> None:
        with self._lock:
            self.sent.append(notification)
            del self.sent[: -self.keep]
        log.info("notify user %s: %s", notification.user_id, notification.title)


_sender: Sender = LocalSink()


def sender() -> Sender:
    """The process's sender."""
    return _sender


def use_sender(new: Sender) -> Sender:
    """Install ``new`` as the process's sender; return the previous one (tests)."""
    global _sender
    previous, _sender = _sender, new
    return previous


def deliver_pending(engine: Engine, *, now: datetime, limit: int = 500) -> dict[str, int]:
    """Send up to ``limit`` undelivered notifications, oldest first; count the outcomes."""
    n = tables.notifications
    counts = {"delivered": 0, "delivery_failed": 0}
    with engine.begin() as conn:
        # SKIP LOCKED: two overlapping runs never send the same row at the same time.
        rows = conn.execute(
            select(n.c.id, n.c.user_id, n.c.kind, n.c.link, n.c.title, n.c.body)
            .where(n.c.dispatched_at.is_(None), n.c.attempts < MAX_ATTEMPTS)
            .order_by(n.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
        for row in rows:
            notification = Notification(*row)
            try:
                _sender.send(notification)
            except Exception as error:  # noqa: BLE001 - any sender failure is retried later
                counts["delivery_failed"] += 1
                log.warning("notification %s not delivered: %s", notification.id, error)
                values = {"attempts": n.c.attempts + 1, "last_error": str(error)[:500]}
            else:
                counts["delivered"] += 1
                values = {"attempts": n.c.attempts + 1, "dispatched_at": now, "last_error": None}
            conn.execute(update(n).where(n.c.id == notification.id).values(**values))
    return counts
