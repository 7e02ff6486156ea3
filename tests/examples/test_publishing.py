"""Publishing: due posts published once; transient errors raise for beatkeeper's retries;
permanent ones are recorded on the post."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import pytest
from beatkeeper_examples import db, publishing
from sqlalchemy import Engine, insert, select

NOW = "2026-03-02T12:00:00+00:00"


@pytest.fixture
def client(examples: Engine) -> Iterator[publishing.DryRunClient]:
    fresh = publishing.DryRunClient()
    saved, publishing.client = publishing.client, fresh
    yield fresh
    publishing.client = saved


def add_posts(engine: Engine, *posts: tuple[str, str]) -> None:
    rows = [{"body": body, "publish_at": datetime.fromisoformat(at)} for body, at in posts]
    with engine.begin() as conn:
        conn.execute(insert(db.posts), rows)


def states(engine: Engine) -> dict[str, tuple[str, int, str | None]]:
    query = select(db.posts.c.body, db.posts.c.status, db.posts.c.attempts, db.posts.c.error)
    with engine.connect() as conn:
        return {body[:10]: (status, n, error) for body, status, n, error in conn.execute(query)}


def test_publishes_due_posts_once(examples: Engine, client: publishing.DryRunClient) -> None:
    add_posts(
        examples, ("due", "2026-03-02T11:59:00+00:00"), ("later", "2026-03-02T12:01:00+00:00")
    )

    first = publishing.publish_due_posts.run(dry_run=True, now=NOW)
    again = publishing.publish_due_posts.run(dry_run=True, now=NOW)

    assert first == {"published": 1, "failed": 0, "transient": 0}
    assert again == {"published": 0, "failed": 0, "transient": 0}
    assert [body for _, body in client.published] == ["due"]
    assert states(examples)["due"][0] == "published"
    assert states(examples)["later"][0] == "scheduled"


def test_batch_size_bounds_one_run(examples: Engine, client: publishing.DryRunClient) -> None:
    add_posts(examples, *[(f"post {i}", "2026-03-02T11:00:00+00:00") for i in range(5)])
    assert publishing.publish_due_posts.run(batch_size=2, now=NOW)["published"] == 2
    assert len(client.published) == 2


def test_a_transient_error_raises_after_publishing_the_rest(
    examples: Engine, client: publishing.DryRunClient
) -> None:
    add_posts(
        examples, ("first", "2026-03-02T11:00:00+00:00"), ("second", "2026-03-02T11:01:00+00:00")
    )
    client.fail_transiently(1)

    with pytest.raises(
        publishing.TransientPublishError, match="1 of the due posts will be retried"
    ):
        publishing.publish_due_posts.run(now=NOW)

    assert states(examples)["first"][:2] == ("scheduled", 1)
    assert states(examples)["second"][0] == "published"
    # The retry (beatkeeper's next attempt) publishes what is left.
    assert publishing.publish_due_posts.run(now=NOW)["published"] == 1
    assert states(examples)["first"][0] == "published"


def test_a_permanent_error_is_recorded_and_does_not_raise(
    examples: Engine, client: publishing.DryRunClient
) -> None:
    add_posts(examples, ("x" * 281, "2026-03-02T11:00:00+00:00"))

    summary = publishing.publish_due_posts.run(now=NOW)

    assert summary == {"published": 0, "failed": 1, "transient": 0}
    assert states(examples)["x" * 10] == ("failed", 0, "post is 281 characters, over 280")
    assert client.published == []
    assert publishing.publish_due_posts.run(now=NOW)["failed"] == 0  # not picked again


def test_only_the_dry_run_client_ships(examples: Engine) -> None:
    with pytest.raises(ValueError, match="dry_run: true"):
        publishing.publish_due_posts.run(dry_run=False, now=NOW)
