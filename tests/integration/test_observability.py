"""Probes and metrics of real ``celery beat`` and prefork ``celery worker`` processes.

Each process gets ``BEATKEEPER_METRICS_PORT`` (a free port) and is asked over HTTP, the way
the kubelet and Prometheus ask: ``/healthz``, ``/readyz`` and ``/metrics``.
"""

from __future__ import annotations

import dataclasses
import re
import secrets
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import Engine
from test_beat import Stack, closed_port
from test_worker_support import Beat, free_port, running_worker
from waiting import wait_for

from beatkeeper.settings import Settings
from beatkeeper.states import RunState


def get(port: int, path: str) -> tuple[int, str]:
    """Status and body of ``GET path``; ``(0, "")`` while nothing listens yet."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as error:
        return int(error.code), error.read().decode()
    except OSError:
        return 0, ""


def sample(text: str, name: str, labels: str = "") -> float | None:
    """The value of one sample in Prometheus text format (``labels`` as written inside {})."""
    pattern = re.escape(name) + (r"\{" + re.escape(labels) + r"\}" if labels else "") + r" (\S+)"
    found = re.search(rf"^{pattern}$", text, flags=re.MULTILINE)
    return None if found is None else float(found.group(1))


def answers(port: int, path: str, status: int) -> str | None:
    got, body = get(port, path)
    return body if got == status else None


@pytest.fixture
def stack(db: Engine, settings: Settings, broker_url: str, tmp_path: Path) -> Iterator[Stack]:
    url = broker_url.rsplit("/", 1)[0] + "/9"  # no other test's worker consumes from it
    queue = f"bk-obs-{secrets.token_hex(4)}"
    yield Stack(db, dataclasses.replace(settings, broker_url=url), queue, tmp_path)
    client = redis.Redis.from_url(url)
    client.delete(queue)
    client.close()


# -- Beat -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_beat_is_live_ready_and_counts_ticks_lag_and_queue(stack: Stack) -> None:
    stack.apply("every-second")
    stack.apply("queued", concurrencyPolicy="Queue")  # no worker: its runs wait their turn
    port = free_port()
    with stack.beat(BEATKEEPER_METRICS_PORT=str(port)):
        wait_for(lambda: answers(port, "/healthz", 200), timeout=30, what="Beat's /healthz")
        wait_for(lambda: answers(port, "/readyz", 200), timeout=30, what="Beat's /readyz")

        def published() -> str | None:
            # The lag is observed as the run leaves, the tick counted once the tick is over.
            _, text = get(port, "/metrics")
            lag = sample(text, "beatkeeper_scheduling_lag_seconds_count")
            timed = sample(text, "beatkeeper_tick_seconds_count")  # recorded after the count
            held = sample(text, "beatkeeper_held_runs", 'reason="queue"')
            return text if lag and lag >= 1 and timed and held else None

        text = wait_for(published, timeout=30, what="a run published and its tick counted")
    assert (sample(text, "beatkeeper_ticks_total") or 0) > 0
    assert (sample(text, "beatkeeper_tick_seconds_count") or 0) > 0
    assert sample(text, "beatkeeper_due_backlog") is not None
    assert sample(text, "beatkeeper_held_runs", 'reason="rateLimit"') == 0
    assert sample(text, "beatkeeper_queue_length", 'queue="celery"') is not None


@pytest.mark.slow
def test_beat_without_its_database_is_live_but_not_ready_and_says_why(stack: Stack) -> None:
    down = f"postgresql://bk:secret@127.0.0.1:{closed_port()}/bk"
    port = free_port()
    with stack.beat(BEATKEEPER_DATABASE_URL=down, BEATKEEPER_METRICS_PORT=str(port)) as beat:

        def unready() -> str | None:
            body = answers(port, "/readyz", 503)
            return body if body and "cannot connect to PostgreSQL" in body else None

        body = wait_for(unready, timeout=30, what="/readyz to say why")
        assert get(port, "/healthz")[0] == 200
        assert beat.poll() is None
    assert body.startswith("beat: database: ")
    assert "secret" not in body


# -- workers --------------------------------------------------------------------------------


@pytest.mark.slow
def test_prefork_worker_counts_runs_of_every_pool_process(
    db: Engine, settings_with_broker: Settings, broker_url: str, tmp_path: Path
) -> None:
    port = free_port()
    beat = Beat.connect(db, broker_url)
    environment = {"BEATKEEPER_METRICS_PORT": str(port)}
    with running_worker(tmp_path, settings_with_broker, environment=environment) as worker:
        wait_for(lambda: answers(port, "/healthz", 200), timeout=30, what="/healthz")
        wait_for(lambda: answers(port, "/readyz", 200), timeout=30, what="/readyz")
        schedule = beat.schedule("sleeper", "userapp.sleep")
        run_ids = [beat.plan(schedule) for _ in range(4)]
        for run_id in run_ids:
            beat.publish(schedule, run_id, worker, 0.3)
        for run_id in run_ids:
            beat.wait_for_state(run_id, RunState.SUCCEEDED, timeout=30)
        pids = {pid for run_id in run_ids for pid in worker.bodies(run_id)}
        assert len(pids) == 2  # both pool processes ran some: their counts must add up
        _, text = get(port, "/metrics")
    assert sample(text, "beatkeeper_runs_finished_total", 'state="succeeded"') == 4
    assert sample(text, "beatkeeper_run_duration_seconds_count", 'state="succeeded"') == 4


@pytest.mark.slow
def test_worker_without_its_database_is_live_but_not_ready(
    settings_with_broker: Settings, engine: Engine, tmp_path: Path
) -> None:
    del engine
    port = free_port()
    environment = {
        "BEATKEEPER_METRICS_PORT": str(port),
        "BEATKEEPER_DATABASE_URL": f"postgresql://bk:secret@127.0.0.1:{closed_port()}/bk",
    }
    with running_worker(tmp_path, settings_with_broker, environment=environment):
        body = wait_for(lambda: answers(port, "/readyz", 503), timeout=30, what="503")
        assert "database: cannot reach PostgreSQL" in body
        assert "secret" not in body
        assert get(port, "/healthz")[0] == 200


@pytest.mark.slow
def test_worker_on_a_schema_never_migrated_is_not_ready_and_keeps_its_runs_queued(
    db: Engine, settings_with_broker: Settings, broker_url: str, tmp_path: Path
) -> None:
    # Say, BEATKEEPER_DB_SCHEMA differs between Beat and the workers: the server answers,
    # but there is no runs table to record a run in.
    elsewhere = dataclasses.replace(
        settings_with_broker, db_schema=f"bk_none_{secrets.token_hex(3)}"
    )
    port = free_port()
    beat = Beat.connect(db, broker_url)
    schedule = beat.schedule("misconfigured", "userapp.add")
    run_id = beat.plan(schedule)
    environment = {"BEATKEEPER_METRICS_PORT": str(port)}
    with running_worker(tmp_path, elsewhere, environment=environment) as wrong:
        body = wait_for(lambda: answers(port, "/readyz", 503), timeout=30, what="503")
        missing = (
            f"schema '{elsewhere.db_schema}' has no beatkeeper tables: run `beatkeeper migrate`"
        )
        assert f"database: {missing}" in body
        beat.publish(schedule, run_id, wrong, 2, 3)
        wrong.wait_for_log(rf"not started, message requeued: {re.escape(missing)}", timeout=30)
        assert "cannot connect" not in wrong.text()
        assert wrong.bodies(run_id) == []
    # Nothing lost: a worker on the right schema takes the message from the queue and runs it.
    with running_worker(tmp_path, settings_with_broker, queue=wrong.queue) as right:
        beat.wait_for_state(run_id, RunState.SUCCEEDED, timeout=30)
        assert len(right.bodies(run_id)) == 1


@pytest.mark.slow
def test_a_prefork_worker_counts_dead_runs_by_schedule_when_asked(
    db: Engine, settings_with_broker: Settings, broker_url: str, tmp_path: Path
) -> None:
    port = free_port()
    beat = Beat.connect(db, broker_url)
    environment = {
        "BEATKEEPER_METRICS_PORT": str(port),
        "BEATKEEPER_METRICS_SCHEDULE_LABELS": "schedule",
    }
    backoff = {"initial": "1s", "max": "1s"}
    with running_worker(tmp_path, settings_with_broker, environment=environment) as worker:
        wait_for(lambda: answers(port, "/readyz", 200), timeout=30, what="/readyz")
        schedule = beat.schedule(
            "doomed", "userapp.fail", retry={"maxAttempts": 2, "backoff": backoff}
        )
        run_id = beat.plan(schedule, max_attempts=2)
        beat.publish(schedule, run_id, worker, "attempt failed")
        beat.wait_for_state(run_id, RunState.RETRYING)
        beat.republish_when_due(schedule, run_id, worker, "attempt failed")
        beat.wait_for_state(run_id, RunState.DEAD)
        _, text = get(port, "/metrics")
    labels = 'outcome="dead",schedule="doomed",schedule_namespace="tests"'
    assert sample(text, "beatkeeper_schedule_runs_total", labels) == 1
