"""The broker contract: what Beat and run tracking need of a broker, on Redis and on RabbitMQ.

Every test asks for ``each_broker`` (``tests/conftest.py``), so it runs once per broker
(``[redis]`` and ``[rabbitmq]``) against a real server: Beat publishes through the broker
port (``beatkeeper_worker.brokers``), a real ``celery worker`` of a user's app with tracking
installed (``test_worker_support``) runs what arrives, and the runs table says what happened.
A broker difference the product hides (priorities, queue counts, lost messages, what an
outage raises) is asserted here as the same behaviour on both.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from beatkeeper_worker import brokers
from beatkeeper_worker.app import make_app
from broker_contract_support import Contract, kill_outright, unreachable
from sqlalchemy import Engine
from test_beat import Stack, log_of
from test_observability import answers, get, sample
from test_planning import settled
from test_worker_support import Beat, free_port
from waiting import wait_for

from beatkeeper.settings import Settings
from beatkeeper.states import RunState

S = RunState
#: A message a killed worker held comes back from Redis after this (RabbitMQ: at once).
VISIBILITY = {"USERAPP_VISIBILITY_TIMEOUT": "5"}


@pytest.fixture
def contract(
    each_broker: str, db: Engine, settings: Settings, tmp_path: Path
) -> Iterator[Contract]:
    with_broker = dataclasses.replace(settings, broker_url=each_broker)
    app = make_app(with_broker)
    queue = f"bk-contract-{secrets.token_hex(4)}"
    broker = brokers.for_app(app)
    contract = Contract(each_broker, with_broker, db, app, broker, queue, tmp_path)
    try:
        yield contract
    finally:
        broker.close()
        contract.delete_queue()


# -- publishing and running ---------------------------------------------------------------------


def test_a_published_run_is_run_by_a_worker_and_recorded(contract: Contract) -> None:
    schedule_id = contract.apply("adder", task="userapp.add", args=[20, 22])
    assert contract.publish_due() == 1
    with contract.worker() as worker:
        run = contract.wait_for_state(schedule_id, S.SUCCEEDED)
    assert run.result == "42"
    assert run.worker.startswith(f"{contract.queue}@")
    assert worker.bodies(run.id) == [run.worker_pid]


def test_a_run_published_three_times_runs_once(contract: Contract, db: Engine) -> None:
    beat = Beat.connect(db, contract.url)
    schedule = beat.schedule("dup", "userapp.sleep")
    run_id = beat.plan(schedule)
    with contract.worker() as worker:
        for _ in range(3):
            beat.publish(schedule, run_id, worker, 0.3)
        beat.wait_for_state(run_id, S.SUCCEEDED)
        worker.wait_for_log(rf"run {run_id} of tests/dup is (running on|succeeded)")
    assert len(worker.bodies(run_id)) == 1


@pytest.mark.slow
def test_celery_beat_and_a_worker_run_every_occurrence(contract: Contract) -> None:
    schedule_id = contract.apply("every-second", interval="1s")
    stack = Stack(contract.engine, contract.settings, contract.queue, contract.workdir)

    def succeeded() -> int:
        return sum(r.state == S.SUCCEEDED for r in contract.runs() if r.schedule_id == schedule_id)

    port = free_port()
    with contract.worker(), stack.beat(BEATKEEPER_METRICS_PORT=str(port)) as beat:
        wait_for(lambda: succeeded() >= 3, timeout=45, what="3 runs to succeed")
        # Beat counts its default queue on either broker, and is ready while it can.
        wait_for(lambda: answers(port, "/readyz", 200), timeout=30, what="Beat to be ready")
        _, metrics = get(port, "/metrics")
    assert sample(metrics, "beatkeeper_queue_length", 'queue="celery"') is not None
    assert "Traceback" not in log_of(beat)
    assert "PRECONDITION_FAILED" not in log_of(beat)


def test_a_plain_celery_worker_runs_what_beat_publishes(contract: Contract) -> None:
    for n in range(3):
        contract.apply(f"plain-{n}", task="probe.record", args=[], kwargs={"n": n})
    assert contract.publish_due() == 3
    stack = Stack(contract.engine, contract.settings, contract.queue, contract.workdir)
    with stack.probe_worker(contract.url):
        wait_for(lambda: len(stack.received()) == 3, timeout=30, what="3 tasks to run")
    assert sorted(seen["kwargs"]["n"] for seen in stack.received()) == [0, 1, 2]
    assert {seen["id"] for seen in stack.received()} == {str(run.id) for run in contract.runs()}


# -- priorities and queue length ----------------------------------------------------------------


def test_waiting_runs_are_served_by_priority_zero_first(contract: Contract) -> None:
    # Published in the opposite order: a queue served first in, first out fails this.
    names = {}
    for name, priority in (("last", 9), ("middle", 5), ("first", None)):
        spec = {} if priority is None else {"priority": priority}
        names[contract.apply(name, **spec)] = name
        assert contract.publish_due() == 1
    with contract.worker(pool="solo", concurrency=1) as worker:
        for schedule_id in names:
            contract.wait_for_state(schedule_id, S.SUCCEEDED)
    started = [line.split()[1] for line in worker.body_log.read_text().splitlines()]
    by_run = {str(contract.run_of(schedule_id).id): name for schedule_id, name in names.items()}
    assert [by_run[run_id] for run_id in started] == ["first", "middle", "last"]


def test_queue_length_counts_waiting_messages_of_every_priority(contract: Contract) -> None:
    broker = contract.broker
    assert (broker.queue_length(contract.queue), broker.is_empty(contract.queue)) == (0, True)
    ids = [contract.apply(f"p{p}", priority=p) for p in (0, 4, 9)] + [contract.apply("none")]
    assert contract.publish_due() == 4
    # Awaited: RabbitMQ may count a message published a moment ago on another channel later.
    wait_for(lambda: broker.queue_length(contract.queue) == 4, what="4 messages counted")
    assert not broker.is_empty(contract.queue)
    with contract.worker():
        for schedule_id in ids:
            contract.wait_for_state(schedule_id, S.SUCCEEDED)
        wait_for(lambda: broker.is_empty(contract.queue), what="the queue to be empty")
    assert broker.queue_length(contract.queue) == 0


# -- lost messages ------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_run_on_a_worker_killed_outright_is_redelivered_and_finishes_once(
    contract: Contract,
) -> None:
    schedule_id = contract.apply("long", task="userapp.sleep", args=[2])
    assert contract.publish_due() == 1
    run_id = contract.run_of(schedule_id).id
    with contract.worker(concurrency=1, environment=VISIBILITY) as doomed:
        [victim] = wait_for(lambda: doomed.bodies(run_id), what="the body to start")
        kill_outright(doomed)
    with contract.worker(environment=VISIBILITY) as heir:
        run = contract.wait_for_state(schedule_id, S.SUCCEEDED, timeout=60)
        heir.wait_for_log(rf"run {run_id} of tests/long taken over from .*pid {victim},")
    assert run.result == "2"
    assert heir.bodies(run_id) == [victim, run.worker_pid]
    assert len(heir.bodies(run_id, "end")) == 1


def test_beat_sends_a_lost_message_again_only_where_the_broker_can_lose_one(
    contract: Contract,
) -> None:
    for name in ("lost-a", "lost-b"):
        contract.apply(name)
    assert contract.publish_due() == 2
    broker = contract.broker
    later = datetime.now(UTC) + timedelta(hours=1, minutes=2)

    def sweep() -> int:
        # What Beat's scheduler passes: a lost-message check only where messages get lost.
        check = broker.is_empty if broker.loses_messages else None
        ticker = contract.ticker(
            clock=lambda: later, redeliver_after=timedelta(seconds=10), queue_is_empty=check
        )
        try:
            return settled(ticker).republished
        finally:
            ticker.close()

    wait_for(lambda: broker.queue_length(contract.queue) == 2, what="2 messages counted")
    assert sweep() == 0  # not started for a minute, but still waiting in the queue
    contract.purge()
    if broker.loses_messages:
        assert sweep() == 2
        assert sweep() == 0  # the copies are waiting now
        assert broker.queue_length(contract.queue) == 2
    else:  # a RabbitMQ queue loses nothing it took: a purge is somebody's decision
        assert sweep() == 0
        assert broker.queue_length(contract.queue) == 0
    assert {run.state for run in contract.runs()} == {S.ENQUEUED}


# -- an unreachable broker ----------------------------------------------------------------------


def test_an_unreachable_broker_raises_one_error_and_loses_no_run(contract: Contract) -> None:
    ids = [contract.apply(name) for name in ("a", "b")]
    down = make_app(dataclasses.replace(contract.settings, broker_url=unreachable(contract.url)))
    cut_off = brokers.for_app(down)
    ticker = contract.ticker(cut_off)
    with pytest.raises(brokers.BrokerUnavailable) as raised:
        ticker.tick()
    ticker.close()
    assert str(raised.value).startswith(f"cannot publish to {cut_off.name} at ")
    assert "secret" not in str(raised.value)
    with pytest.raises(brokers.BrokerUnavailable, match=f"cannot count queue .* on {cut_off.name}"):
        cut_off.queue_length(contract.queue)
    assert {contract.run_of(schedule_id).state for schedule_id in ids} == {S.PLANNED}
    assert contract.publish_due() == 2  # the broker is back: every run goes out
    wait_for(lambda: contract.broker.queue_length(contract.queue) == 2, what="2 messages")


@pytest.mark.slow
def test_beat_with_an_unreachable_broker_says_so_in_one_line_and_keeps_runs(
    contract: Contract,
) -> None:
    contract.apply("a", interval="1s")
    stack = Stack(contract.engine, contract.settings, contract.queue, contract.workdir)
    name = contract.broker.name
    with stack.beat(BEATKEEPER_BROKER_URL=unreachable(contract.url)) as beat:
        wait_for(lambda: f"cannot publish to {name} at" in log_of(beat), timeout=30, what="log")
        wait_for(contract.runs, timeout=10, what="a planned run")
        assert beat.poll() is None
    states = [run.state for run in contract.runs()]  # missed: ticks were slowed by retries
    assert S.PLANNED in states
    assert set(states) <= {S.PLANNED, S.MISSED}
    assert "Traceback" not in log_of(beat)
    assert "secret" not in log_of(beat)
