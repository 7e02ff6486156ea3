"""Queue and rateLimit with two real Beat replicas (one killed mid-way) and a real worker.

A Queue schedule whose task outlasts its period never overlaps, starts its runs in planned
order and skips none; schedules sharing a rate limit never exceed it in any window and lose
no occurrence. Beat replicas are ``celery beat`` processes with beatkeeper's scheduler;
the worker is a real ``celery worker`` of a user's app with run tracking installed.
"""

from __future__ import annotations

import itertools
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select
from test_beat import Stack, stack
from test_worker_support import running_worker
from waiting import wait_for

from beatkeeper.settings import Settings
from beatkeeper.states import RunState
from beatkeeper.store.models import rate_sends, runs

__all__ = ["stack"]  # the fixture, used by name

S = RunState
pytestmark = pytest.mark.slow


def finished(engine: Engine) -> list[Any]:
    with engine.connect() as db:
        query = select(runs).where(runs.c.state == S.SUCCEEDED).order_by(runs.c.planned_at)
        return list(db.execute(query))


def every_run(engine: Engine) -> list[Any]:
    with engine.connect() as db:
        return list(db.execute(select(runs).order_by(runs.c.schedule_id, runs.c.planned_at)))


def test_a_queue_that_outlasts_its_period_runs_each_occurrence_alone_in_order(
    stack: Stack, settings: Settings, tmp_path: Path
) -> None:
    worker_settings = stack.settings
    stack.apply(
        "slow", task="userapp.sleep", args=[1.5], interval="1s",
        concurrencyPolicy="Queue", missedRuns="RunAll",
    )  # fmt: skip
    with (
        running_worker(tmp_path, worker_settings, queue=stack.queue, concurrency=3),
        stack.beat("beat-1") as first,
        stack.beat("beat-2"),
    ):
        wait_for(lambda: len(finished(stack.engine)) >= 3, timeout=60, what="3 queued runs")
        first.kill()  # a replica dies mid-way; the other carries on
        first.wait()
        wait_for(lambda: len(finished(stack.engine)) >= 6, timeout=60, what="3 more runs")
    done = finished(stack.engine)
    for before, after in itertools.pairwise(done):
        assert before.finished_at <= after.started_at  # never two at once
        assert before.planned_at < after.planned_at  # in planned order
    states = [run.state for run in every_run(stack.engine)]
    assert S.SKIPPED not in states
    assert S.MISSED not in states
    planned = [run.planned_at for run in every_run(stack.engine)]
    assert {b - a for a, b in itertools.pairwise(planned)} == {timedelta(seconds=1)}  # no gap
    active = [s for s in states if s in {S.ENQUEUED, S.RUNNING}]
    assert len(active) <= 1


def test_schedules_sharing_a_rate_limit_never_exceed_it_and_lose_nothing(
    stack: Stack, tmp_path: Path
) -> None:
    limit = {"key": "platform", "runs": 3, "per": "2s"}
    for n in range(3):
        stack.apply(
            f"post-{n}", task="userapp.add", args=[n, 1], interval="1s", maxRuns=4,
            missedRuns="RunAll", rateLimit=limit,
        )  # fmt: skip
    with (
        running_worker(tmp_path, stack.settings, queue=stack.queue, concurrency=2),
        stack.beat("beat-1") as first,
        stack.beat("beat-2"),
    ):
        wait_for(lambda: len(finished(stack.engine)) >= 4, timeout=60, what="4 runs")
        first.kill()
        first.wait()
        wait_for(lambda: len(finished(stack.engine)) >= 12, timeout=60, what="all 12 runs")
    with stack.engine.connect() as db:
        sent = sorted(db.execute(select(rate_sends.c.sent_at)).scalars())
    assert len(sent) == 12  # each occurrence sent once, none lost
    window = timedelta(seconds=2)
    assert all(sum(1 for o in sent if t - window < o <= t) <= 3 for t in sent)
    assert {run.state for run in every_run(stack.engine)} == {S.SUCCEEDED}
