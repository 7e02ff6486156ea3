"""No duplicate, no gap: Beat replicas killed at random, Redis and PostgreSQL restarted.

Each scenario lets at least 5,000 occurrences come due (200 schedules, one every second, for
25 seconds) while something breaks, then waits for the dust to settle and checks that every
occurrence has exactly one run (none missing: each schedule's runs are one second apart from
start to end), every run was executed exactly once, and nothing is left planned or enqueued.
Duplicate deliveries (a replica killed between publishing and recording ``enqueued``) are
allowed and reported; a duplicate execution is not (invariant 3).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from reliability_harness import Consumer, Fleet, Scenario, occurrences_between
from waiting import wait_for

pytestmark = pytest.mark.slow

SCHEDULES = 200
WINDOW = timedelta(seconds=25)
LEAD = timedelta(seconds=4)  # Beat processes start (importing Celery) before the first one


def run_scenario(
    setup: tuple[Scenario, Any, Any],
    *,
    replicas: int,
    during: Callable[[Fleet, float], None],
) -> dict[str, Any]:
    scenario = setup[0]
    start = (datetime.now(UTC) + LEAD).replace(microsecond=0)
    end = start + WINDOW - timedelta(milliseconds=1)
    scenario.apply(SCHEDULES, start=start, end=end)
    expected = SCHEDULES * occurrences_between(start, end)
    fleet = Fleet(scenario.env(), scenario.folder)
    consumer = Consumer(scenario.broker_url, scenario.engine)
    consumer.start()
    for replica in range(replicas):
        fleet.start(replica)
    try:
        while datetime.now(UTC) < end:
            during(fleet, (datetime.now(UTC) - start).total_seconds())
            time.sleep(0.1)
        wait_for(
            lambda: scenario.counts() == {"succeeded": expected},
            timeout=60,
            what=f"{expected} runs to succeed (now {scenario.counts()})",
        )
    except AssertionError:
        print(fleet.logs())
        raise
    finally:
        fleet.stop()
        consumer.stopping.set()
        consumer.join(timeout=10)
    assert scenario.gaps() == []
    assert sum(consumer.executions.values()) == expected
    assert set(consumer.executions.values()) == {1}
    duplicates = sum(count - 1 for count in consumer.deliveries.values())
    report = {"runs": expected, "kills": fleet.kills, "duplicate_deliveries": duplicates}
    print(report)
    return report


def test_killing_beat_replicas_at_random_loses_and_duplicates_nothing(scenario: Any) -> None:
    next_kill = [2.0]

    def kill_now_and_then(fleet: Fleet, elapsed: float) -> None:
        if elapsed >= next_kill[0]:
            fleet.kill_one()
            next_kill[0] = elapsed + random.uniform(2, 4)

    report = run_scenario(scenario, replicas=3, during=kill_now_and_then)
    assert report["kills"] >= 5


def test_a_redis_restart_loses_nothing(scenario: Any) -> None:
    redis_server = scenario[2]
    restarted = []

    def restart_redis_once(_: Fleet, elapsed: float) -> None:
        if elapsed >= 10 and not restarted:
            redis_server.restart()
            restarted.append(elapsed)

    run_scenario(scenario, replicas=2, during=restart_redis_once)
    assert restarted


def test_a_postgres_restart_loses_nothing(scenario: Any) -> None:
    postgres = scenario[1]
    restarted = []

    def restart_postgres_once(_: Fleet, elapsed: float) -> None:
        if elapsed >= 10 and not restarted:
            postgres.restart()
            restarted.append(elapsed)

    run_scenario(scenario, replicas=2, during=restart_postgres_once)
    assert restarted
