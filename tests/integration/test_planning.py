"""Beat's tick in-process, against real PostgreSQL and Redis, with a clock the test moves.

Each test gets its own queue, so the messages a tick published are exactly the ones on it.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import json
import secrets
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
import redis
from beatkeeper_worker import brokers
from beatkeeper_worker.app import make_app
from beatkeeper_worker.brokers.redis import RedisBroker
from beatkeeper_worker.tick import OVERLAP_FROM, Ticker, TickReport
from celery import Celery
from sqlalchemy import Engine, insert, select, text, update

from beatkeeper.decisions.planning import CATCH_UP_PER_TICK, DueSchedule
from beatkeeper.policy import load_policy
from beatkeeper.settings import Settings
from beatkeeper.spec import validate_manifest
from beatkeeper.states import RunState
from beatkeeper.store import notifications, planning, publishing, requests, transition
from beatkeeper.store.models import runs, schedules
from beatkeeper.store.schedules import apply_schedule, delete_schedule

S = RunState
T0 = datetime(2026, 3, 2, 9, 0, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def settled(ticker: Ticker) -> TickReport:
    """One tick whose last batch is marked ``enqueued`` (a tick leaves that under way)."""
    report = ticker.tick()
    ticker.settle()
    return report


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@dataclasses.dataclass
class Beat:
    """One in-process Beat replica with a movable clock, publishing to ``queue``."""

    engine: Engine
    app: Celery
    queue: str
    clock: Clock
    broker: redis.Redis

    def ticker(self, **options: Any) -> Ticker:
        return Ticker(self.engine, self.app, brokers.for_app(self.app), clock=self.clock, **options)

    def tick_at(self, now: datetime) -> Any:
        """One tick at ``now``, its last batch marked ``enqueued`` before this returns."""
        self.clock.now = now
        return settled(self.ticker())

    def messages(self) -> list[dict[str, Any]]:
        """Messages on the queue, oldest first, with the body decoded."""
        found = []
        for raw in [raw for key in self.keys() for raw in reversed(self.broker.lrange(key, 0, -1))]:
            message = json.loads(raw)
            message["args"], message["kwargs"], _ = json.loads(base64.b64decode(message["body"]))
            found.append(message)
        return found

    def keys(self) -> list[str]:
        """The queue's lists: kombu keeps one per priority step on Redis."""
        return [self.queue, *(f"{self.queue}\x06\x16{p}" for p in (3, 6, 9))]

    def apply(self, name: str, now: datetime, **spec: Any) -> uuid.UUID:
        document = {
            "apiVersion": "beatkeeper.io/v1alpha1",
            "kind": "Schedule",
            "metadata": {"name": name, "namespace": "team"},
            "spec": {"task": "team.job", "interval": "1m", "queue": self.queue, **spec},
        }
        manifest = validate_manifest(copy.deepcopy(document), now=now).manifest
        with self.engine.begin() as db:
            return apply_schedule(db, manifest, now=now).id

    def runs(self, schedule_id: uuid.UUID | None = None) -> list[Any]:
        query = select(runs).order_by(runs.c.planned_at)
        if schedule_id is not None:
            query = query.where(runs.c.schedule_id == schedule_id)
        with self.engine.connect() as db:
            return list(db.execute(query))

    def states(self, schedule_id: uuid.UUID) -> list[str]:
        return [run.state for run in self.runs(schedule_id)]


def beat_broker(broker_url: str) -> str:
    """Another Redis database than the session's, so no worker of other tests consumes ours."""
    return broker_url.rsplit("/", 1)[0] + "/9"


@pytest.fixture
def beat(db: Engine, settings: Settings, broker_url: str) -> Iterator[Beat]:
    url = beat_broker(broker_url)
    app = make_app(dataclasses.replace(settings, broker_url=url))
    queue = f"bk-test-{secrets.token_hex(4)}"
    client = redis.Redis.from_url(url)
    try:
        yield Beat(db, app, queue, Clock(T0), client)
    finally:
        client.delete(*Beat(db, app, queue, Clock(T0), client).keys())
        client.close()


def test_a_due_run_is_published_with_the_run_id_as_task_id_and_its_headers(beat: Beat) -> None:
    schedule_id = beat.apply("report", T0, args=[1, "a"], kwargs={"k": True}, priority=3)
    report = beat.tick_at(T0 + MINUTE)
    assert (report.claimed, report.planned, report.published) == (1, 1, 1)
    [run] = beat.runs()
    assert run.state == S.ENQUEUED
    assert run.planned_at == T0 + MINUTE
    [message] = beat.messages()
    headers = message["headers"]
    assert headers["id"] == str(run.id)
    assert headers["task"] == "team.job"
    assert headers["beatkeeper_schedule"] == "team/report"
    assert headers["beatkeeper_schedule_id"] == str(schedule_id)
    assert headers["beatkeeper_planned_at"] == (T0 + MINUTE).isoformat()
    assert (headers["beatkeeper_attempt"], headers["beatkeeper_max_attempts"]) == (1, 1)
    assert headers["eta"] is None  # invariant 4: nothing waits in the broker
    assert message["properties"]["priority"] == 3
    assert (message["args"], message["kwargs"]) == ([1, "a"], {"k": True})


def test_messages_are_json_never_pickle(beat: Beat) -> None:
    beat.apply("report", T0)
    beat.tick_at(T0 + MINUTE)
    [message] = beat.messages()
    assert message["content-type"] == "application/json"
    assert beat.app.conf.accept_content == ["json"]


def test_ticking_again_at_the_same_instant_plans_nothing_new(beat: Beat) -> None:
    beat.apply("report", T0)
    beat.tick_at(T0 + MINUTE)
    again = beat.tick_at(T0 + MINUTE)
    assert (again.claimed, again.published) == (0, 0)
    assert len(beat.runs()) == len(beat.messages()) == 1


def test_nothing_is_planned_before_it_is_due(beat: Beat) -> None:
    beat.apply("report", T0)
    assert beat.tick_at(T0 + MINUTE - timedelta(milliseconds=1)).claimed == 0
    assert beat.runs() == []


def test_replicas_ticking_at_once_plan_and_publish_each_occurrence_once(beat: Beat) -> None:
    for n in range(300):
        beat.apply(f"s{n}", T0)
    now = T0 + MINUTE
    errors: list[BaseException] = []

    def replica() -> None:
        try:
            settled(
                Ticker(
                    beat.engine,
                    beat.app,
                    brokers.for_app(beat.app),
                    batch_size=25,
                    clock=lambda: now,
                )
            )
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=replica) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    all_runs = beat.runs()
    assert len(all_runs) == 300
    assert {run.state for run in all_runs} == {S.ENQUEUED}
    task_ids = [m["headers"]["id"] for m in beat.messages()]
    assert sorted(task_ids) == sorted(str(run.id) for run in all_runs)  # once each


def test_a_batch_still_being_marked_stays_locked_until_its_commit(
    beat: Beat, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tick returns while its last batch is marked on a helper thread: meanwhile no other
    replica can send those runs, and ``close`` waits for the marking to commit."""
    for n in range(OVERLAP_FROM):  # a batch large enough to be marked on the helper thread
        beat.apply(f"s{n}", T0)
    beat.clock.now = T0 + MINUTE
    release = threading.Event()
    marking = publishing.mark_enqueued

    def held_mark(*args: Any, **kwargs: Any) -> Any:
        assert release.wait(timeout=30)
        return marking(*args, **kwargs)

    monkeypatch.setattr(publishing, "mark_enqueued", held_mark)
    first = beat.ticker()
    assert first.tick().published == OVERLAP_FROM
    assert {run.state for run in beat.runs()} == {S.PLANNED}  # not committed yet

    # Sent, so not due for this replica; still planned and due for the others.
    assert first.next_wake() == T0 + 2 * MINUTE
    other_replica = beat.ticker()
    assert other_replica.next_wake() == T0 + MINUTE
    other = other_replica.tick()
    assert (other.claimed, other.published) == (0, 0)

    release.set()
    first.close()
    assert {run.state for run in beat.runs()} == {S.ENQUEUED}
    ids = [m["headers"]["id"] for m in beat.messages()]
    assert sorted(ids) == sorted(str(run.id) for run in beat.runs())  # once each


class BrokenPublisher(RedisBroker):
    def publish(self, messages: Any) -> None:
        raise ConnectionError("broker down")


def test_a_run_committed_but_not_published_is_published_by_the_next_tick(beat: Beat) -> None:
    beat.apply("report", T0)
    beat.clock.now = T0 + MINUTE
    broken = Ticker(beat.engine, beat.app, BrokenPublisher(beat.app), clock=beat.clock)
    with pytest.raises(ConnectionError):
        broken.tick()
    [run] = beat.runs()
    assert run.state == S.PLANNED  # committed before publishing
    report = beat.tick_at(T0 + MINUTE + timedelta(seconds=5))
    assert (report.claimed, report.published) == (0, 1)
    assert [m["headers"]["id"] for m in beat.messages()] == [str(run.id)]


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("RunAll", [S.ENQUEUED] * 4),
        ("RunLatest", [S.MISSED, S.MISSED, S.MISSED, S.ENQUEUED]),
        ("Skip", [S.MISSED] * 4),
    ],
)
def test_missed_runs_after_downtime(beat: Beat, policy: str, expected: list[RunState]) -> None:
    schedule_id = beat.apply("report", T0, missedRuns=policy)
    beat.tick_at(T0 + 4 * MINUTE + timedelta(seconds=1))  # down for 4 occurrences
    assert beat.states(schedule_id) == expected
    assert len(beat.messages()) == expected.count(S.ENQUEUED)
    with beat.engine.connect() as db:
        next_run = db.execute(select(schedules.c.next_run_at)).scalar_one()
    assert next_run == T0 + 5 * MINUTE


def test_a_long_downtime_is_jumped_over_in_bounded_work(beat: Beat) -> None:
    schedule_id = beat.apply("report", T0, interval="1s")
    beat.tick_at(T0 + timedelta(days=2))  # 172,800 occurrences late
    states = beat.states(schedule_id)
    assert states[-1] == S.ENQUEUED
    assert len(states) == CATCH_UP_PER_TICK + 1
    assert beat.runs(schedule_id)[-1].planned_at == T0 + timedelta(days=2)


def test_run_all_catches_up_batch_by_batch(beat: Beat) -> None:
    schedule_id = beat.apply("report", T0, interval="1s", missedRuns="RunAll")
    beat.tick_at(T0 + timedelta(seconds=250, milliseconds=500))
    planned = [run.planned_at for run in beat.runs(schedule_id)]
    assert planned == [T0 + timedelta(seconds=n) for n in range(1, 251)]
    assert len(beat.messages()) == 250


def test_starting_deadline_records_a_late_occurrence_as_missed(beat: Beat) -> None:
    schedule_id = beat.apply("report", T0, startingDeadline="10s")
    beat.tick_at(T0 + MINUTE + timedelta(seconds=11))
    assert beat.states(schedule_id) == [S.MISSED]
    assert beat.messages() == []


def test_starting_deadline_also_applies_when_publishing_was_delayed(beat: Beat) -> None:
    schedule_id = beat.apply("report", T0, startingDeadline="10s")
    beat.clock.now = T0 + MINUTE
    with pytest.raises(ConnectionError):
        settled(Ticker(beat.engine, beat.app, BrokenPublisher(beat.app), clock=beat.clock))
    beat.tick_at(T0 + MINUTE + timedelta(seconds=30))  # the broker came back too late
    assert beat.states(schedule_id) == [S.MISSED]
    assert beat.messages() == []


def test_expires_is_an_absolute_time_from_the_due_instant(beat: Beat) -> None:
    beat.apply("report", T0, expires="5m", timeLimit="30s", softTimeLimit="20s")
    beat.tick_at(T0 + MINUTE + timedelta(seconds=2))
    [message] = beat.messages()
    assert message["headers"]["expires"] == (T0 + 6 * MINUTE).isoformat()
    assert message["headers"]["timelimit"] == [30.0, 20.0]


def test_an_occurrence_past_its_expiry_is_recorded_expired_not_published(beat: Beat) -> None:
    schedule_id = beat.apply("report", T0, expires="10s")
    beat.tick_at(T0 + MINUTE + timedelta(seconds=20))
    assert beat.states(schedule_id) == [S.EXPIRED]
    assert beat.messages() == []


def test_jitter_delays_the_run_by_the_same_amount_on_every_replica(beat: Beat) -> None:
    schedule_id = beat.apply("report", T0, jitter="30s")
    with beat.engine.connect() as db:
        due = db.execute(select(schedules.c.next_due_at)).scalar_one()
    assert T0 + MINUTE <= due <= T0 + MINUTE + timedelta(seconds=30)
    assert beat.tick_at(due - timedelta(microseconds=1)).claimed == 0
    beat.tick_at(due)
    [run] = beat.runs(schedule_id)
    assert (run.planned_at, run.due_at) == (T0 + MINUTE, due)


def test_a_suspended_schedule_plans_nothing(beat: Beat) -> None:
    beat.apply("report", T0, suspend=True)
    assert beat.tick_at(T0 + 10 * MINUTE).claimed == 0
    assert beat.runs() == []


def test_a_schedule_paused_after_failures_plans_nothing(beat: Beat) -> None:
    beat.apply("report", T0)
    with beat.engine.begin() as db:
        db.execute(update(schedules).values(suspended=True, paused_reason="3 failures"))
    assert beat.tick_at(T0 + 10 * MINUTE).claimed == 0


def test_a_deleted_schedule_plans_nothing(beat: Beat) -> None:
    schedule_id = beat.apply("report", T0)
    with beat.engine.begin() as db:
        delete_schedule(db, now=T0, uid=schedule_id)
    assert beat.tick_at(T0 + 10 * MINUTE).claimed == 0


def test_max_runs_stops_after_that_many_occurrences(beat: Beat) -> None:
    schedule_id = beat.apply("report", T0, maxRuns=2, startTime=(T0 + MINUTE).isoformat())
    for n in range(1, 5):
        beat.tick_at(T0 + n * MINUTE)
    assert beat.states(schedule_id) == [S.ENQUEUED, S.ENQUEUED]
    with beat.engine.connect() as db:
        assert db.execute(select(schedules.c.next_run_at)).scalar_one() is None


def test_end_time_stops_planning(beat: Beat) -> None:
    schedule_id = beat.apply("report", T0, endTime=(T0 + 2 * MINUTE).isoformat())
    for n in range(1, 5):
        beat.tick_at(T0 + n * MINUTE)
    assert [run.planned_at for run in beat.runs(schedule_id)] == [T0 + MINUTE, T0 + 2 * MINUTE]


def test_forbid_skips_an_occurrence_while_a_run_is_active(beat: Beat) -> None:
    schedule_id = beat.apply("report", T0, concurrencyPolicy="Forbid")
    beat.tick_at(T0 + MINUTE)
    beat.tick_at(T0 + 2 * MINUTE)  # the first run is still enqueued
    assert beat.states(schedule_id) == [S.ENQUEUED, S.SKIPPED]
    first = beat.runs(schedule_id)[0]
    with beat.engine.begin() as db:
        transition(db, first.id, S.RUNNING, now=T0)
        transition(db, first.id, S.SUCCEEDED, now=T0)
    beat.tick_at(T0 + 3 * MINUTE)
    assert beat.states(schedule_id) == [S.SUCCEEDED, S.SKIPPED, S.ENQUEUED]


def test_replace_cancels_the_active_run_and_publishes_the_new_one(beat: Beat) -> None:
    schedule_id = beat.apply("report", T0, concurrencyPolicy="Replace")
    beat.tick_at(T0 + MINUTE)
    first = beat.runs(schedule_id)[0]
    with beat.engine.begin() as db:
        transition(db, first.id, S.RUNNING, now=T0)
    report = beat.tick_at(T0 + 2 * MINUTE)
    assert report.cancelled == 1
    assert beat.states(schedule_id) == [S.CANCELLED, S.ENQUEUED]
    assert len(beat.messages()) == 2


def test_a_retry_waits_in_postgres_and_is_published_when_due(beat: Beat) -> None:
    schedule_id = beat.apply("report", T0, retry={"maxAttempts": 3})
    beat.tick_at(T0 + MINUTE)
    [run] = beat.runs(schedule_id)
    retry_at = T0 + MINUTE + timedelta(seconds=40)
    with beat.engine.begin() as db:
        transition(db, run.id, S.RUNNING, now=T0)
        transition(db, run.id, S.FAILED, now=T0)
        transition(db, run.id, S.RETRYING, now=T0, due_at=retry_at, attempt=runs.c.attempt + 1)
    assert beat.tick_at(retry_at - timedelta(seconds=1)).published == 0
    assert len(beat.messages()) == 1  # nothing waits in Redis meanwhile (invariant 4)
    assert beat.tick_at(retry_at).published == 1
    retried = beat.messages()[-1]["headers"]
    assert retried["id"] == str(run.id)
    assert (retried["beatkeeper_attempt"], retried["retries"], retried["eta"]) == (2, 1, None)
    assert beat.states(schedule_id) == [S.ENQUEUED]


def test_an_edit_plans_from_the_edit_onward_without_a_catch_up_run(beat: Beat) -> None:
    schedule_id = beat.apply("report", T0)
    edited = T0 + 30 * MINUTE + timedelta(seconds=10)  # Beat was down since T0
    beat.apply("report", edited, interval="2m")
    beat.tick_at(edited)
    assert beat.runs(schedule_id) == []
    beat.tick_at(edited + 2 * MINUTE)
    assert len(beat.runs(schedule_id)) == 1


def test_history_keeps_the_newest_finished_runs(beat: Beat) -> None:
    schedule_id = beat.apply(
        "report", T0, interval="1s", missedRuns="RunAll", history={"succeeded": 3, "failed": 2}
    )
    with beat.engine.begin() as db:
        for n in range(60):
            planned = T0 - timedelta(seconds=n + 1)
            state = S.SUCCEEDED if n % 2 else S.FAILED
            db.execute(
                insert(runs).values(
                    schedule_id=schedule_id,
                    planned_at=planned,
                    due_at=planned,
                    task="t",
                    state=state,
                )
            )
    beat.tick_at(T0 + timedelta(seconds=30))  # 30 new occurrences: a prune is due
    finished = [r for r in beat.runs(schedule_id) if r.state in {S.SUCCEEDED, S.FAILED}]
    assert [r.state for r in finished] == [
        S.SUCCEEDED,
        S.SUCCEEDED,
        S.FAILED,
        S.SUCCEEDED,
        S.FAILED,
    ]
    assert max(r.planned_at for r in finished) == T0 - timedelta(seconds=1)
    assert len(beat.runs(schedule_id)) == 5 + 30  # the new ones are not finished


def test_next_wake_is_the_earliest_due_schedule_or_run(beat: Beat) -> None:
    beat.apply("report", T0, interval="10m")
    beat.apply("other", T0, interval="3m")
    with beat.engine.connect() as db:
        assert planning.next_wake(db, now=T0) == T0 + 3 * MINUTE


def test_claiming_reads_the_due_index_not_the_table(beat: Beat) -> None:
    """A tick's cost follows what is due: the claim walks ix_schedules_due only."""
    with beat.engine.begin() as db:
        db.execute(
            text("""
            INSERT INTO schedules (id, namespace, name, generation, spec, spec_hash, task,
                                   zone, trigger, next_run_at, next_due_at)
            SELECT gen_random_uuid(), 'bulk', 's' || n, 1, '{}', 'h', 't', 'UTC', 'x',
                   :far + n * interval '1 second', :far + n * interval '1 second'
            FROM generate_series(1, 20000) AS n
            """),
            {"far": T0 + timedelta(days=1)},
        )
        db.execute(text("ANALYZE schedules"))
        plan = db.execute(
            text("EXPLAIN (FORMAT JSON) " + planning._CLAIM.text),
            {"now": T0, "limit": 500},
        ).scalar_one()
    assert "ix_schedules_due" in json.dumps(plan)
    assert beat.tick_at(T0 + MINUTE).claimed == 0


def test_the_claims_select_their_columns_in_the_order_of_the_fields(beat: Beat) -> None:
    """Claimed rows become DueSchedule and PublishableRun by position."""
    claims = {
        planning._CLAIM: DueSchedule,
        publishing._PUBLISHABLE: publishing.PublishableRun,
        publishing._LOST: publishing.PublishableRun,
    }
    with beat.engine.connect() as db:
        for query, made in claims.items():
            columns = list(db.execute(query, {"now": T0, "before": T0, "limit": 0}).keys())
            assert columns == [f.name for f in dataclasses.fields(made)][: len(columns)]


def test_a_schedule_change_notifies_the_schema_channel(beat: Beat, settings: Settings) -> None:
    url = str(beat.engine.url.set(drivername="postgresql").render_as_string(hide_password=False))
    with psycopg.connect(url, autocommit=True) as listener:
        listener.execute(f'LISTEN "{notifications.channel_for(settings.db_schema)}"')
        schedule_id = beat.apply("report", T0)
        received = [n.payload for n in listener.notifies(timeout=5, stop_after=1)]
    assert received == [str(schedule_id)]


def test_a_schedule_whose_stored_spec_cannot_be_read_is_stopped_not_retried(beat: Beat) -> None:
    schedule_id = beat.apply("report", T0)
    with beat.engine.begin() as db:
        db.execute(update(schedules).values(spec={"task": "team.job", "interval": "soon"}))
    report = beat.tick_at(T0 + MINUTE)
    assert (report.claimed, report.planned) == (1, 0)
    with beat.engine.connect() as db:
        stopped = db.execute(select(schedules.c.next_due_at)).scalar_one()
    assert stopped is None  # not claimed again on every tick
    assert beat.runs(schedule_id) == []


def test_a_replay_the_policy_now_forbids_is_recorded_cancelled_and_never_published(
    beat: Beat, tmp_path: Any
) -> None:
    schedule_id = beat.apply("report", T0)
    beat.tick_at(T0 + MINUTE)
    [run] = beat.runs()
    with beat.engine.begin() as db:
        assert transition(db, run.id, S.RUNNING, now=T0 + MINUTE)
        assert transition(db, run.id, S.FAILED, now=T0 + MINUTE, error="boom")
        # Replayed where nobody checked the policy (a CLI without the file).
        replayed = requests.replay(db, run.id, now=T0 + 2 * MINUTE).run_id
    path = tmp_path / "policy.yaml"
    path.write_text('namespaces:\n  team: {tasks: ["reports.*"]}\n')
    beat.clock.now = T0 + 2 * MINUTE + timedelta(seconds=1)
    sent_before = len(beat.messages())
    report = settled(beat.ticker(policy=load_policy(str(path))))
    assert report.published == 0
    assert len(beat.messages()) == sent_before
    reason = f"task team.job is not allowed in namespace team by the tenancy policy ({path})"
    by_id = {r.id: r for r in beat.runs(schedule_id)}
    assert (by_id[replayed].state, by_id[replayed].error) == (S.CANCELLED, reason)
