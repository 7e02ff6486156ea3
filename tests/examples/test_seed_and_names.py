"""The example package as a worker and `beatkeeper dev` meet it: every task a manifest names
exists, the tables are created and seeded once whoever gets there first, an older layout
is rebuilt, and every example Schedule's task succeeds on the seed and on empty tables."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis
from beatkeeper_examples import db, dispatch, tables, tasks
from beatkeeper_examples.publishing import client
from celery import current_app
from sqlalchemy import Engine, func, select, text

from beatkeeper.manifests import manifest_files, read_documents
from beatkeeper.settings import Settings
from beatkeeper.store.engine import make_engine

EXAMPLES = Path(__file__).resolve().parents[2] / "manifests" / "examples"
SCHEDULES = [d.content for path in manifest_files([EXAMPLES]) for d in read_documents(path)]
#: Tasks no Schedule names: sent per job by the publishing tick, or run by hand.
UNSCHEDULED = {"examples.publishing.publish_post", "examples.publishing.replay_dead_letter"}


def test_every_example_manifest_names_a_task_of_the_package() -> None:
    assert tasks.__all__  # importing it registers every shared task
    named = {spec["spec"]["task"] for spec in SCHEDULES}
    registered = {name for name in current_app.tasks if name.startswith("examples.")}
    assert named == registered - UNSCHEDULED


@pytest.fixture
def fresh_schema(settings: Settings) -> Iterator[Engine]:
    schema = f"bkx_seed_{secrets.token_hex(4)}"
    base = make_engine(settings, application_name="beatkeeper-examples-tests")
    try:
        yield base.execution_options(schema_translate_map={tables.SCHEMA: schema})
    finally:
        with base.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        base.dispose()


def counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
            for t in (tables.users, tables.chores, tables.events, tables.post_schedules)
        }


def test_tables_are_created_and_seeded_once_by_concurrent_first_uses(fresh_schema: Engine) -> None:
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: db.prepare(fresh_schema, seed_if_new=True), range(4)))
    assert counts(fresh_schema) == {"users": 4, "chores": 4, "events": 4, "post_schedules": 3}


def test_a_schema_of_an_older_layout_is_rebuilt(fresh_schema: Engine) -> None:
    schema = db.schema_of(fresh_schema)
    with fresh_schema.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        conn.execute(text(f'CREATE TABLE "{schema}".users (id bigint, team text)'))
    db.prepare(fresh_schema, seed_if_new=True)
    assert counts(fresh_schema)["users"] == 4


def run_every_schedule(now: str) -> dict[str, Any]:
    results = {}
    for spec in SCHEDULES:
        task = current_app.tasks[spec["spec"]["task"]]
        kwargs = {**spec["spec"].get("kwargs", {}), "now": now}
        if spec["spec"]["task"] == "examples.publishing.scheduler_tick":
            kwargs["publish_queue"] = "test-seed-publish"
        results[spec["metadata"]["name"]] = task.run(**kwargs)
    return results


@pytest.mark.parametrize("seeded", [True, False], ids=["seeded", "empty"])
def test_every_example_schedule_succeeds_with_its_manifest_kwargs(
    fresh_schema: Engine, examples_redis: redis.Redis, broker_url: str, seeded: bool
) -> None:
    db.prepare(fresh_schema, seed_if_new=seeded)
    db.use(fresh_schema, examples_redis)
    saved_client, saved_sender = (
        client.use(client.DryRunClient()),
        dispatch.use_sender(dispatch.LocalSink()),
    )
    from celery import Celery  # noqa: PLC0415

    Celery("seed-tests", broker=broker_url, set_as_current=False).set_current()
    try:
        results = run_every_schedule(datetime.now(UTC).isoformat())
    finally:
        db.use(None)
        client.use(saved_client)
        dispatch.use_sender(saved_sender)
        examples_redis.delete("test-seed-publish")
    if seeded:
        assert results["events-complete-ended"] == {"completed": 1}
        assert results["publishing-scheduler-tick"]["planned"] == 2
        assert results["credits-release-expired-holds"]["released"] == 1
        assert results["credits-settle-pending"] == {"committed": 1, "reverted": 1}
        assert results["chores-generate-instances"]["created"] > 0
    else:
        assert results["events-complete-ended"] == {"completed": 0}
