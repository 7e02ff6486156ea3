"""Publishing: the tick plans each post once and sends due jobs to the publish queue (a
real Redis broker); a job publishes once, retries with backoff within platform limits,
goes dead after its last attempt and is recorded, replayed and measured."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
import redis
from beatkeeper_examples import dispatch, tables
from beatkeeper_examples.publishing import (
    accounts,
    client,
    dead_letters,
    metrics,
    publish,
    scheduler,
)
from celery import Celery
from conftest import AddUser
from sqlalchemy import Engine, insert, select, update

NOW = "2026-03-02T12:00:00+00:00"
AT = datetime.fromisoformat(NOW)
p, j = tables.post_schedules, tables.publish_jobs


@pytest.fixture
def dry_run(examples: Engine) -> Iterator[client.DryRunClient]:
    fresh = client.DryRunClient()
    saved = client.use(fresh)
    yield fresh
    client.use(saved)


@pytest.fixture
def broker(examples_redis: redis.Redis, broker_url: str) -> Iterator[redis.Redis]:
    """The tick's messages go to a real Redis; the test reads the queue."""
    app = Celery("publishing-tests", broker=broker_url, set_as_current=False)
    app.conf.update(task_serializer="json", accept_content=["json"])
    app.set_current()  # the examples' app is made current again before the next test
    examples_redis.delete("test-publish")
    yield examples_redis
    examples_redis.delete("test-publish")


def queued(broker: redis.Redis) -> list[int]:
    """The job ids of the publish_post messages waiting in the queue."""
    ids = []
    for raw in broker.lrange("test-publish", 0, -1):
        message = json.loads(raw)
        assert message["headers"]["task"] == "examples.publishing.publish_post"
        args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        ids.append(args[0])
    return sorted(ids)


def add_schedule(engine: Engine, body: str, at: datetime, **values: Any) -> int:
    row = {"platform": "x", "body": body, "next_run_at": at, **values}
    with engine.begin() as conn:
        return int(conn.execute(insert(p).values(row).returning(p.c.id)).scalar_one())


def jobs(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(j).order_by(j.c.id)))


def tick(now: str = NOW, **kwargs: Any) -> dict[str, int]:
    counts: dict[str, int] = scheduler.scheduler_tick.run(
        publish_queue="test-publish", now=now, **kwargs
    )
    return counts


def test_the_tick_plans_each_due_post_once_and_sends_it_after_the_commit(
    examples: Engine, broker: redis.Redis
) -> None:
    add_schedule(examples, "due", AT - timedelta(minutes=1))
    add_schedule(examples, "later", AT + timedelta(minutes=1))
    weekly = add_schedule(examples, "weekly", AT - timedelta(minutes=2), cron="0 9 * * MON",
                          time_zone="Europe/London")  # fmt: skip

    first = tick()
    again = tick()

    assert first == {"planned": 2, "sent": 2, "stale": 0}
    assert again == {"planned": 0, "sent": 0, "stale": 0}
    assert sorted(job.body for job in jobs(examples)) == ["due", "weekly"]
    assert {job.status for job in jobs(examples)} == {"enqueued"}
    assert queued(broker) == sorted(job.id for job in jobs(examples))
    with examples.connect() as conn:
        following = conn.execute(select(p.c.next_run_at).where(p.c.id == weekly)).scalar_one()
    assert following == datetime.fromisoformat("2026-03-09T09:00:00+00:00")  # GMT in March


def test_a_post_schedule_with_an_unusable_cron_is_disabled_and_the_tick_goes_on(
    examples: Engine, broker: redis.Redis
) -> None:
    bad = add_schedule(examples, "bad", AT, cron="0 9 * * FUNDAY")
    add_schedule(examples, "good", AT)
    assert tick() == {"planned": 2, "sent": 2, "stale": 0}
    with examples.connect() as conn:
        enabled = conn.execute(select(p.c.enabled).where(p.c.id == bad)).scalar_one()
    assert enabled is False


def test_a_job_enqueued_but_never_started_is_sent_again(
    examples: Engine, broker: redis.Redis
) -> None:
    add_schedule(examples, "due", AT - timedelta(minutes=1))
    tick()
    broker.delete("test-publish")  # the message was lost
    assert tick("2026-03-02T12:05:00+00:00")["sent"] == 0
    assert tick("2026-03-02T12:11:00+00:00", redeliver_after_minutes=10)["sent"] == 1
    assert len(queued(broker)) == 1


def planned_job(engine: Engine, body: str = "hello", platform: str = "x") -> int:
    schedule = add_schedule(engine, body, AT, platform=platform, enabled=False)
    row = {"schedule_id": schedule, "planned_at": AT, "platform": platform, "body": body,
           "status": "enqueued", "next_attempt_at": AT}  # fmt: skip
    with engine.begin() as conn:
        return int(conn.execute(insert(j).values(row).returning(j.c.id)).scalar_one())


def attempt(job_id: int, now: str = NOW, **kwargs: Any) -> dict[str, Any]:
    outcome: dict[str, Any] = publish.publish_post.run(job_id, now=now, **kwargs)
    return outcome


def enqueue(engine: Engine, job_id: int) -> None:
    with engine.begin() as conn:
        conn.execute(update(j).where(j.c.id == job_id).values(status="enqueued"))


def test_a_job_publishes_once_whatever_messages_arrive(
    examples: Engine, dry_run: client.DryRunClient
) -> None:
    job = planned_job(examples)
    assert attempt(job) == {"job": job, "status": "succeeded"}
    assert attempt(job) == {"job": job, "status": "not enqueued"}  # a duplicate message
    assert dry_run.published == [("x", "hello")]
    assert jobs(examples)[0].external_id == "dry-run-x-1"


def test_transient_failures_retry_with_backoff_then_go_dead(
    examples: Engine, dry_run: client.DryRunClient
) -> None:
    job = planned_job(examples)
    dry_run.fail_transiently(3)
    outcomes = []
    for _ in range(3):
        outcomes.append(attempt(job, max_attempts=3, backoff_seconds=60)["status"])
        row = jobs(examples)[0]
        assert row.status == "dead" or AT <= row.next_attempt_at <= AT + timedelta(
            seconds=60 * 2 ** (row.attempt - 1)
        )
        enqueue(examples, job)
    assert outcomes == ["retrying", "retrying", "dead"]
    assert jobs(examples)[0].attempt == 3


def test_a_permanent_failure_fails_at_once(examples: Engine, dry_run: client.DryRunClient) -> None:
    job = planned_job(examples, body="x" * 281)
    assert attempt(job)["status"] == "failed"
    assert jobs(examples)[0].last_error == "post is 281 characters, over 280"


def test_the_platform_limit_defers_without_using_an_attempt(
    examples: Engine, dry_run: client.DryRunClient
) -> None:
    limits = {"x": {"posts": 2, "window_seconds": 3600}}
    first, second, third = (planned_job(examples, f"post {k}") for k in range(3))
    mastodon = planned_job(examples, "elsewhere", platform="mastodon")
    attempt(first, limits=limits)
    attempt(second, "2026-03-02T12:10:00+00:00", limits=limits)

    assert attempt(third, "2026-03-02T12:20:00+00:00", limits=limits)["status"] == "deferred"
    assert attempt(mastodon, limits=limits)["status"] == "succeeded"
    row = next(r for r in jobs(examples) if r.id == third)
    assert (row.status, row.attempt) == ("retrying", 0)
    assert row.next_attempt_at == datetime.fromisoformat("2026-03-02T13:00:00+00:00")


def test_dead_jobs_are_recorded_once_their_owner_told_and_replayable(
    examples: Engine, add_user: AddUser, dry_run: client.DryRunClient, sink: dispatch.LocalSink
) -> None:
    owner = add_user("ana")
    job = planned_job(examples)
    with examples.begin() as conn:
        conn.execute(update(p).values(owner_id=owner))
    dry_run.fail_transiently(1)
    attempt(job, max_attempts=1)

    first = dead_letters.process_dead_letters.run(now=NOW)
    again = dead_letters.process_dead_letters.run(now=NOW)
    replay = dead_letters.replay_dead_letter.run(job, now=NOW)

    assert (first["recorded"], first["owners_notified"], again["recorded"]) == (1, 1, 0)
    assert [(n.user_id, n.kind) for n in sink.sent] == [(owner, "post_dead")]
    assert replay == {"job": job, "replayed": True}
    assert (jobs(examples)[0].status, jobs(examples)[0].attempt) == ("planned", 0)


def test_metrics_are_captured_once_per_stage(
    examples: Engine, dry_run: client.DryRunClient
) -> None:
    job = planned_job(examples)
    attempt(job)

    counts = [
        metrics.capture_metrics.run(now=(AT + after).isoformat())["captured"]
        for after in (timedelta(minutes=30), timedelta(hours=2), timedelta(hours=3),
                      timedelta(days=1, hours=1), timedelta(days=8))
    ]  # fmt: skip

    assert counts == [0, 1, 0, 1, 1]
    with examples.connect() as conn:
        m = tables.metrics_snapshots
        stages = sorted(conn.execute(select(m.c.stage)).scalars())
    assert stages == ["1h", "24h", "7d"]


def test_a_platforms_capture_measures_only_that_platforms_posts(
    examples: Engine, dry_run: client.DryRunClient
) -> None:
    attempt(planned_job(examples, platform="x"))
    attempt(planned_job(examples, "toot", platform="mastodon"))
    later = (AT + timedelta(hours=2)).isoformat()

    assert metrics.capture_metrics.run(platform="mastodon", now=later) == {"captured": 1}
    assert metrics.capture_metrics.run(platform="mastodon", now=later) == {"captured": 0}
    assert metrics.capture_metrics.run(platform="x", now=later) == {"captured": 1}


def test_the_token_check_asks_the_platform_once_and_refuses_an_unknown_one(
    dry_run: client.DryRunClient,
) -> None:
    assert accounts.check_token.run("x", now=NOW) == {"platform": "x", "valid": True}
    with pytest.raises(client.PermanentPublishError, match="unknown platform 'myspace'"):
        accounts.check_token.run("myspace", now=NOW)
    assert dry_run.token_checks == ["x"]
