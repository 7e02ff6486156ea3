"""The example package as a worker and `beatkeeper dev` meet it: every task a manifest names
exists, and the tables are created and seeded once, whoever gets there first."""

from __future__ import annotations

import secrets
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from beatkeeper_examples import db, events, publishing, tasks
from celery import current_app
from sqlalchemy import func, select, text

from beatkeeper.manifests import manifest_files, read_documents
from beatkeeper.settings import Settings
from beatkeeper.store.engine import make_engine

EXAMPLES = Path(__file__).resolve().parents[2] / "manifests" / "examples"


def test_every_example_manifest_names_a_task_of_the_package() -> None:
    assert tasks.__all__  # importing it registers every shared task
    named = {
        d.content["spec"]["task"]
        for path in manifest_files([EXAMPLES])
        for d in read_documents(path)
    }
    registered = {name for name in current_app.tasks if name.startswith("examples.")}
    assert named == registered


def test_tables_are_created_and_seeded_once_by_concurrent_first_uses(settings: Settings) -> None:
    schema = f"bkx_seed_{secrets.token_hex(4)}"
    base = make_engine(settings, application_name="beatkeeper-examples-tests")
    engine = base.execution_options(schema_translate_map={db.SCHEMA: schema})
    try:
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda _: db.prepare(engine, seed_if_new=True), range(4)))
        with engine.connect() as conn:
            counts = {
                t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
                for t in (db.users, db.chores, db.events, db.credit_holds, db.posts)
            }
        assert counts == {"users": 4, "chores": 4, "events": 3, "credit_holds": 2, "posts": 3}
    finally:
        with base.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        base.dispose()


def test_the_seed_gives_the_first_runs_work(settings: Settings) -> None:
    schema = f"bkx_seed_{secrets.token_hex(4)}"
    base = make_engine(settings, application_name="beatkeeper-examples-tests")
    engine = base.execution_options(schema_translate_map={db.SCHEMA: schema})
    saved, publishing.client = publishing.client, publishing.DryRunClient()
    try:
        db.prepare(engine, seed_if_new=True)
        db.use(engine)
        now = datetime.now(UTC).isoformat()
        assert events.complete_ended.run(now=now) == {"completed": 1}
        published = publishing.publish_due_posts.run(now=now)
        assert published == {"published": 1, "failed": 1, "transient": 0}
    finally:
        db.use(None)
        publishing.client = saved
        with base.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        base.dispose()
