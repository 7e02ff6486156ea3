"""Social-post publishing: every minute, publish the scheduled posts whose time has come.

Failures come in two kinds. A transient one (the network, a rate limit) leaves the post
scheduled and makes the task raise, after the rest of the batch is done: beatkeeper's retry
policy (``spec.retry`` in the manifest) then waits in PostgreSQL and runs the task again,
and after the last attempt the run is dead and can be replayed. Celery's own ``retry``
countdowns are not used: they would park the message in Redis (invariant 4). A permanent one
(the post is invalid) marks that post failed, with the reason, and does not raise.

Only ``DryRunClient`` ships here: it records what it would post and can be told to fail.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from celery import shared_task
from sqlalchemy import Connection, Row, select, update

from beatkeeper_examples import db
from beatkeeper_examples.clock import instant

__all__ = [
    "MAX_LENGTH",
    "DryRunClient",
    "PermanentPublishError",
    "TransientPublishError",
    "client",
    "publish_due_posts",
]

MAX_LENGTH = 280


class TransientPublishError(Exception):
    """Worth trying again later: beatkeeper's retry policy does that."""


class PermanentPublishError(Exception):
    """Will never succeed: the post is marked failed."""


@dataclass
class DryRunClient:
    """Posts nothing; records what it would post. ``fail_transiently(n)`` fails the next n."""

    published: list[tuple[int, str]] = field(default_factory=list)
    _failures_left: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def fail_transiently(self, times: int) -> None:
        with self._lock:
            self._failures_left = times

    def publish(self, post_id: int, body: str) -> str:
        """Return the id the post would get, or raise one of the two publish errors."""
        if len(body) > MAX_LENGTH:
            raise PermanentPublishError(f"post is {len(body)} characters, over {MAX_LENGTH}")
        with self._lock:
            if self._failures_left > 0:
                self._failures_left -= 1
                raise TransientPublishError("dry run: simulated timeout from the network")
            self.published.append((post_id, body))
        return f"dry-run-{post_id}"


#: The process's client: what a dry run recorded, and where tests inject failures.
client = DryRunClient()


@shared_task(name="examples.publishing.publish_due_posts")  # type: ignore[untyped-decorator]
def publish_due_posts(
    dry_run: bool = True, batch_size: int = 50, now: str | None = None
) -> dict[str, int]:
    """Publish up to ``batch_size`` due posts; raise if any failed transiently."""
    if not dry_run:
        raise ValueError("only the dry-run client ships with the examples: set dry_run: true")
    at = instant(now)
    counts = {"published": 0, "failed": 0, "transient": 0}
    errors: list[str] = []
    with db.connect().begin() as conn:
        for post in _due(conn, at, batch_size):
            try:
                external_id = client.publish(post.id, post.body)
            except TransientPublishError as error:
                counts["transient"] += 1
                errors.append(f"post {post.id}: {error}")
                _record(conn, post.id, attempts=db.posts.c.attempts + 1, error=str(error))
            except PermanentPublishError as error:
                counts["failed"] += 1
                _record(conn, post.id, status="failed", error=str(error))
            else:
                counts["published"] += 1
                _record(conn, post.id, status="published", external_id=external_id, published_at=at)
    if errors:
        # Raised after the commit: published posts stay published when the run is retried.
        raise TransientPublishError(f"{len(errors)} of the due posts will be retried: {errors[0]}")
    return counts


def _due(conn: Connection, at: Any, batch_size: int) -> list[Row[Any]]:
    # SKIP LOCKED: a run that overlaps another (Allow, a replay) never publishes a post twice.
    return list(
        conn.execute(
            select(db.posts.c.id, db.posts.c.body)
            .where(db.posts.c.status == "scheduled", db.posts.c.publish_at <= at)
            .order_by(db.posts.c.publish_at, db.posts.c.id)
            .limit(batch_size)
            .with_for_update(skip_locked=True)
        )
    )


def _record(conn: Connection, post_id: int, **values: Any) -> None:
    conn.execute(update(db.posts).where(db.posts.c.id == post_id).values(**values))
