"""No run lost, none run twice: Beat replicas and workers SIGKILLed, Redis and PostgreSQL restarted.

Each scenario runs real ``celery beat`` replicas and two real ``celery worker`` processes
(prefork, run tracking installed) and lets at least 5,000 occurrences come due (200
schedules, one every second, for 25 seconds) while something breaks. Then it waits until
every run has succeeded and the broker holds no message, and checks that every occurrence
has exactly one run (each schedule's runs one second apart from the window's start to its
end), that no Beat or worker exited by itself (each reconnects; the one known exception,
a kombu error on a Redis restart, is restarted as a Deployment would and reported), that
every run's body
finished, and that a body ran more than once only where a SIGKILL explains it: its process
was killed with the body running or its outcome not yet recorded, and the redelivered
message ran it again (at least once, as ``acks_late`` means). Duplicate deliveries and such
re-executions are reported, never hidden.

The victims and the times of the kills follow a seed, printed with the report; set
``BEATKEEPER_TEST_RELIABILITY_SEED`` to replay a sequence.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from reliability_fleet import Fleet
from reliability_harness import Scenario, judge, occurrences_between
from waiting import wait_for

pytestmark = pytest.mark.slow

SCHEDULES = 200
WORKERS = 2
WINDOW = timedelta(seconds=25)
LEAD = timedelta(seconds=2)  # applying the schedules takes a moment
SETTLE_SECONDS = 60  # the backlog of an outage, and messages back from a visibility timeout
Events = list[tuple[float, Callable[[], object]]]


def run_scenario(
    scenario: Scenario, *, beats: int, events: Callable[[Fleet], Events]
) -> dict[str, Any]:
    seed = int(os.environ.get("BEATKEEPER_TEST_RELIABILITY_SEED") or random.randrange(10**6))
    print(f"\nseed {seed}")
    fleet = Fleet(scenario.env(), scenario.folder, seed)
    try:
        fleet.start(beats=beats, workers=WORKERS)
        start = (datetime.now(UTC) + LEAD).replace(microsecond=0)
        end = start + WINDOW - timedelta(milliseconds=1)
        scenario.apply(SCHEDULES, start=start, end=end)
        occurrences = occurrences_between(start, end)
        expected = SCHEDULES * occurrences
        for at, action in sorted(events(fleet), key=lambda event: event[0]):
            _pause_until(start + timedelta(seconds=at))
            action()
        _pause_until(end)
        wait_for(
            lambda: scenario.counts() == {"succeeded": expected},
            timeout=SETTLE_SECONDS,
            what=f"all {expected} runs to succeed",
            interval=0.5,
        )
        settled_in = round((datetime.now(UTC) - end).total_seconds(), 1)
        wait_for(lambda: scenario.broker_holds() == 0, timeout=30, what="an empty broker")
        crashed = fleet.crashed()
    except AssertionError as timed_out:
        _explain(scenario, fleet, timed_out)
        raise
    finally:
        fleet.stop()
    last = start + timedelta(seconds=occurrences - 1)
    assert scenario.gaps() == []
    assert scenario.off_window(first=start, last=last) == []
    verdict = judge(scenario.owners(), scenario.bodies(), fleet.kills)
    deliveries = fleet.deliveries()
    report = {
        "seed": seed,
        "runs": expected,
        "settled_in_s": settled_in,  # from the last occurrence until every run succeeded
        "kills": fleet.kill_counts(),
        "duplicate_deliveries": sum(deliveries.values()) - len(deliveries),
        "re_executions": verdict.re_executions,
        "finished_twice": verdict.finished_twice,
        "cut_short": verdict.cut_short,
        "taken_over": fleet.count_in_worker_logs(r"taken over from"),
        "broker_lost": fleet.count_in_worker_logs(r"Connection to broker lost"),
        "database_lost": fleet.count_in_worker_logs(
            r"database unavailable, trying again|database connection lost"
        ),
        "crashed": crashed,
    }
    print(report)
    assert _only_known_exits(fleet, crashed), f"exited by themselves: {crashed}"
    assert verdict.strangers == []
    assert verdict.unfinished == []
    assert verdict.unexplained == {}, f"run more often than kills explain; kills: {fleet.kills}"
    return report


#: Why a worker may exit (code 1) by itself here; its Deployment starts it again, as the
#: fleet does, and nothing is lost. Any other exit fails the scenario.
KNOWN_EXITS = (
    # kombu 5.7's Redis transport, restoring unacknowledged messages while it closes a
    # channel whose connection went away with a Redis restart.
    "'NoneType' object has no attribute 'hostname'",
    # Celery, when a pool process is killed before the worker it belongs to finished
    # starting.
    "WorkerLostError: Could not start worker processes",
)


def _only_known_exits(fleet: Fleet, crashed: dict[str, int]) -> bool:
    def known(member: str) -> bool:
        log = fleet.log(member).read_text(errors="replace")
        return member.startswith("worker") and any(reason in log for reason in KNOWN_EXITS)

    return all(known(member) for member in crashed)


def _explain(scenario: Scenario, fleet: Fleet, timed_out: AssertionError) -> None:
    """Print what the fleet did, and name the cause when it is one of these two."""
    print(fleet.logs(), "\nruns by state:", scenario.counts(), "\nkills:", fleet.kills)
    received = fleet.deliveries()
    unsettled = scenario.unsettled()
    for run in unsettled:
        print(f"unsettled: {run}; received by a worker {received[str(run.id)]} times")
    if (crashed := fleet.crashed()) and not _only_known_exits(fleet, crashed):
        raise AssertionError(
            f"exited by themselves instead of reconnecting (exit codes): {crashed}"
        ) from timed_out
    lost = [run.id for run in unsettled if run.state == "enqueued" and not received[str(run.id)]]
    if lost and scenario.broker_holds() == 0:
        raise AssertionError(
            f"{len(lost)} run(s) published and marked enqueued, never received by any worker, "
            f"and the broker holds no message: lost between the broker and the workers: {lost}"
        ) from timed_out


def _pause_until(moment: datetime) -> None:
    """The scenario's clock: the next event is due at ``moment``."""
    time.sleep(max(0.0, (moment - datetime.now(UTC)).total_seconds()))


def test_killing_beat_replicas_and_workers_at_random_loses_and_doubles_nothing(
    scenario: Scenario,
) -> None:
    def kill_every_few_seconds(fleet: Fleet) -> Events:
        events: Events = []
        at = 2.0
        while at < WINDOW.total_seconds():
            events.append((at, fleet.kill_one))
            at += fleet.rng.uniform(2, 4)
        return events

    report = run_scenario(scenario, beats=3, events=kill_every_few_seconds)
    assert sum(report["kills"].values()) >= 6
    assert min(report["kills"].values()) >= 1  # every kind: Beat, worker, pool process


def test_a_redis_restart_loses_nothing(scenario: Scenario) -> None:
    report = run_scenario(
        scenario, beats=2, events=lambda _: [(10.0, scenario.redis_server.restart)]
    )
    assert report["broker_lost"] >= WORKERS  # each worker lost Redis, and got it back


def test_a_postgres_restart_loses_nothing(scenario: Scenario) -> None:
    report = run_scenario(scenario, beats=2, events=lambda _: [(10.0, scenario.postgres.restart)])
    assert report["database_lost"] >= 1  # workers lost PostgreSQL mid-run, and got it back
