"""Messages a worker must not believe: forged, mismatched, duplicated elsewhere, or unreadable.

A message names a run by its task id; the run row, not the message, says what that run is
(its task, its schedule and that schedule's namespace). Each test puts a message on the
broker the way anyone with access to Redis could, and checks the run rows, the task bodies
that ran, and that the worker process lives on.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import Engine, text, update
from test_worker_support import Beat, Worker, later, running_worker

from beatkeeper.settings import Settings
from beatkeeper.states import RunState
from beatkeeper.store.models import runs

S = RunState


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hostile")


@pytest.fixture(scope="module")
def worker(workdir: Path, settings_with_broker: Settings, engine: Engine) -> Iterator[Worker]:
    del engine  # migrated before the worker connects
    with running_worker(workdir, settings_with_broker) as started:
        yield started


@pytest.fixture
def beat(db: Engine, broker_url: str) -> Beat:
    return Beat.connect(db, broker_url)


def good_run_succeeds(beat: Beat, worker: Worker) -> None:
    """The worker still runs a genuine message: it lives and its consumer turns."""
    schedule = beat.schedule(f"alive-{uuid.uuid4().hex[:6]}", "userapp.add")
    run_id = beat.plan(schedule)
    beat.publish(schedule, run_id, worker, 40, 2)
    assert beat.wait_for_state(run_id, S.SUCCEEDED).result == "42"


# -- a message against the run row --------------------------------------------------------


def test_message_naming_a_planned_run_with_another_task_is_refused(
    beat: Beat, worker: Worker
) -> None:
    victim = beat.schedule("victim", "userapp.add")
    run_id = beat.plan(victim, state=S.PLANNED)
    # Someone else's task with forged arguments, under the victim run's id and headers.
    beat.publish(victim, run_id, worker, "forged", task="userapp.echo")
    worker.wait_for_log(rf"message for run {run_id} .*refused")
    assert worker.bodies(run_id) == []
    run = beat.run(run_id)
    assert (run.state, run.worker, run.result) == (S.PLANNED, None, None)
    good_run_succeeds(beat, worker)


def test_message_naming_a_run_of_another_schedule_is_refused(beat: Beat, worker: Worker) -> None:
    victim = beat.schedule("other-victim", "userapp.add")
    attacker = beat.schedule("attacker", "userapp.add")
    run_id = beat.plan(victim, state=S.PLANNED)
    # The right task, but the headers name the attacker's schedule (another namespace/id).
    beat.publish(attacker, run_id, worker, 1, 1, run=beat.run(run_id))
    worker.wait_for_log(rf"message for run {run_id} .*refused")
    assert worker.bodies(run_id) == []
    assert beat.run(run_id).state == S.PLANNED


@pytest.mark.parametrize("state", [S.PLANNED, S.RETRYING])
def test_message_for_a_run_not_due_yet_is_refused_even_with_the_right_task(
    beat: Beat, worker: Worker, db: Engine, state: RunState
) -> None:
    # Beat publishes a run only once it is due: an earlier message did not come from Beat.
    schedule = beat.schedule(f"later-{state}", "userapp.add")
    run_id = beat.plan(schedule, state=state)
    with db.begin() as connection:
        connection.execute(update(runs).where(runs.c.id == run_id).values(due_at=later(52 * 60)))
    beat.publish(schedule, run_id, worker, 1000, 1000)  # forged arguments, 52 minutes early
    worker.wait_for_log(rf"message for run {run_id} .*refused: the run is {state}, due at .*")
    assert worker.bodies(run_id) == []
    assert beat.run(run_id).state == state


def test_unregistered_task_named_for_a_running_run_leaves_it_to_finish(
    beat: Beat, worker: Worker
) -> None:
    schedule = beat.schedule("long", "userapp.sleep")
    run_id = beat.plan(schedule)
    beat.publish(schedule, run_id, worker, 2)
    beat.wait_for_state(run_id, S.RUNNING)
    beat.publish(schedule, run_id, worker, task="userapp.not_here")
    worker.wait_for_log(rf"message for run {run_id} .*refused")
    assert beat.run(run_id).state == S.RUNNING
    run = beat.wait_for_state(run_id, S.SUCCEEDED, S.FAILED)
    assert (run.state, run.result) == (S.SUCCEEDED, "2")


def test_duplicate_on_a_worker_lacking_the_task_does_not_fail_a_run_running_elsewhere(
    beat: Beat, worker: Worker, db: Engine
) -> None:
    schedule = beat.schedule("elsewhere", "otherapp.only_there")
    run_id = beat.plan(schedule)
    # Another worker's live process runs it: its session is what ownership looks for.
    token = uuid.uuid4().hex[:12]
    with db.connect() as elsewhere:
        elsewhere.execute(text(f"SET application_name = 'beatkeeper-worker {token}'"))
        with db.begin() as connection:
            connection.execute(
                update(runs)
                .where(runs.c.id == run_id)
                .values(
                    state=S.RUNNING.value, worker="other@host", worker_pid=1, worker_session=token
                )
            )
        beat.publish(schedule, run_id, worker)
        worker.wait_for_log(rf"run {run_id} of tests/elsewhere is running on other@host")
        assert beat.run(run_id).state == S.RUNNING


def test_unregistered_task_fails_an_enqueued_run_it_matches(beat: Beat, worker: Worker) -> None:
    schedule = beat.schedule("typo-again", "userapp.nope")
    run_id = beat.plan(schedule)
    beat.publish(schedule, run_id, worker)
    assert beat.wait_for_state(run_id, S.FAILED).error.startswith("NotRegistered")
    worker.wait_for_log(rf"run {run_id} of tests/typo-again failed: NotRegistered")


def test_refused_message_for_a_finished_run_does_not_claim_it_failed(
    beat: Beat, worker: Worker
) -> None:
    schedule = beat.schedule("finished", "userapp.add")
    run_id = beat.plan(schedule, state=S.SUCCEEDED)
    beat.publish(schedule, run_id, worker, 1, 1, serializer="pickle")
    worker.wait_for_log(rf"message for run {run_id} .*refused.*is succeeded")
    assert f"run {run_id} of tests/finished failed" not in worker.text()
    assert beat.run(run_id).state == S.SUCCEEDED


# -- messages that cannot be read at all -------------------------------------------------


def raw_envelope(worker: Worker, body: str, *, headers: dict[str, str] | None = None) -> str:
    """A message in kombu's Redis envelope with ``body`` as is (normally base64 of JSON)."""
    tag = str(uuid.uuid4())
    return json.dumps(
        {
            "body": body,
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": {"lang": "py", "task": "userapp.add", "id": tag}
            if headers is None
            else headers,
            "properties": {
                "correlation_id": tag,
                "delivery_mode": 2,
                "delivery_info": {"exchange": "", "routing_key": worker.queue},
                "priority": 0,
                "body_encoding": "base64",
                "delivery_tag": tag,
            },
        }
    )


@pytest.mark.parametrize(
    "body",
    [
        base64.b64encode(b"{not json").decode(),
        "%%% not base64 %%%",
        base64.b64encode(b"\xff\xfe\x00 binary").decode(),
    ],
    ids=["not-json", "not-base64", "not-utf8"],
)
def test_poison_message_is_dropped_with_one_line_and_the_worker_lives(
    beat: Beat, worker: Worker, broker_url: str, body: str
) -> None:
    before = worker.text().count("poison message")
    redis.Redis.from_url(broker_url).lpush(worker.queue, raw_envelope(worker, body))
    worker.wait_for_log(rf"(?s)(poison message.*){{{before + 1}}}")
    assert worker.process.poll() is None
    good_run_succeeds(beat, worker)


def test_message_without_a_task_id_is_dropped_and_the_worker_lives(
    beat: Beat, worker: Worker, broker_url: str
) -> None:
    before = worker.text().count("poison message")
    body = base64.b64encode(b"[[1, 2], {}, {}]").decode()
    poison = raw_envelope(worker, body, headers={"lang": "py", "task": "userapp.add"})
    redis.Redis.from_url(broker_url).lpush(worker.queue, poison)
    worker.wait_for_log(rf"(?s)(poison message.*){{{before + 1}}}")
    assert worker.process.poll() is None
    good_run_succeeds(beat, worker)


def test_envelope_that_is_not_json_is_dropped_and_the_worker_lives(
    beat: Beat, worker: Worker, broker_url: str
) -> None:
    before = worker.text().count("poison message")
    redis.Redis.from_url(broker_url).lpush(worker.queue, b"\x00garbage{")
    worker.wait_for_log(rf"(?s)(poison message.*){{{before + 1}}}")
    assert worker.process.poll() is None
    good_run_succeeds(beat, worker)
