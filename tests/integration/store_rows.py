"""Schedules and runs written straight into the store, for the tests of what acts on them
(holds no tests).

``billing_schedule`` applies a ``billing.invoice`` Schedule (cron ``0 2 * * *`` unless the
spec says otherwise) as the operator would; ``add_run`` inserts one run of it in a given
state, as if Beat and a worker had brought it there.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, insert

from beatkeeper.spec import API_VERSION, KIND, validate_manifest
from beatkeeper.states import RunState
from beatkeeper.store.lookups import ScheduleRef
from beatkeeper.store.models import runs
from beatkeeper.store.schedules import Applied, apply_schedule

__all__ = ["add_run", "billing_schedule"]


def billing_schedule(
    engine: Engine,
    name: str = "nightly",
    namespace: str = "billing",
    *,
    now: datetime,
    **spec: Any,
) -> Applied:
    """Apply Schedule ``namespace/name`` of task ``billing.invoice``, ``spec`` on top."""
    document = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"task": "billing.invoice", "cron": "0 2 * * *", **spec},
    }
    manifest = validate_manifest(document, now=now).manifest
    with engine.begin() as db:
        return apply_schedule(db, manifest, now=now)


def add_run(
    engine: Engine,
    schedule: Applied | ScheduleRef,
    planned: datetime,
    state: RunState,
    *,
    task: str = "billing.invoice",
    **values: Any,
) -> uuid.UUID:
    """Insert a run of ``schedule`` planned and due at ``planned``; ``values`` for any
    other column."""
    with engine.begin() as db:
        run_id: uuid.UUID = db.execute(
            insert(runs)
            .values(
                schedule_id=schedule.id,
                planned_at=planned,
                due_at=planned,
                task=task,
                state=state.value,
                **values,
            )
            .returning(runs.c.id)
        ).scalar_one()
    return run_id
