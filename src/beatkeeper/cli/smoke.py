"""`beatkeeper smoke`: Beat, the broker and a worker checked end to end (the chart's test pod).

It applies a throwaway Schedule of ``beatkeeper.noop``, waits for a run of it to succeed
and deletes the Schedule again, whatever happened; when it times out it says which step
the run got stuck at.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import click

from beatkeeper.cli.output import UserError
from beatkeeper.cli.runs import span
from beatkeeper.cli.store import database
from beatkeeper.spec import API_VERSION, DEFAULT_NAMESPACE, KIND, validate_manifest
from beatkeeper.states import FINAL, RunState
from beatkeeper.store import Engine, lookups
from beatkeeper.store.schedules import apply_schedule, delete_schedule

__all__ = ["smoke"]

NOOP_TASK = "beatkeeper.noop"  # registered by beatkeeper_worker.tasks


@click.command("smoke")
@click.option("--timeout", default=180, show_default=True, type=click.IntRange(1), help="Seconds.")
@click.option(
    "--namespace", default=DEFAULT_NAMESPACE, show_default=True, help="Of the throwaway Schedule."
)
def smoke(timeout: int, namespace: str) -> None:
    """Check Beat, the broker and a worker end to end with a beatkeeper.noop run.

    Applies a throwaway Schedule, waits until a run of it succeeded, deletes it.
    Exit 0 on success, 1 with what got stuck otherwise.

    \b
    Examples:
      beatkeeper smoke
      beatkeeper smoke --timeout 60 --namespace ops
    """
    name = f"beatkeeper-smoke-{secrets.token_hex(4)}"
    with database() as engine, _throwaway(engine, namespace, name) as schedule_id:
        run = _succeeded_run(engine, schedule_id, timeout=timeout)
    lag = span(run.started_at - run.planned_at) if run.started_at else "?"
    click.echo(f"smoke test passed: run {run.id} of {namespace}/{name} succeeded, {lag} late")


def _succeeded_run(engine: Engine, schedule_id: uuid.UUID, *, timeout: int) -> lookups.RunView:
    deadline = time.monotonic() + timeout
    while True:
        with engine.connect() as db:
            run = lookups.latest_run(db, schedule_id)
        if run is not None and run.state == RunState.SUCCEEDED:
            return run
        if run is not None and run.state in FINAL:
            raise UserError(f"smoke run {run.id} ended {run.state}: {run.error or 'no error'}")
        if time.monotonic() > deadline:
            raise UserError(f"smoke test timed out after {timeout}s: {_stuck(run)}")
        time.sleep(0.2)  # nothing to subscribe to: a worker writes the run row


@contextmanager
def _throwaway(engine: Engine, namespace: str, name: str) -> Iterator[uuid.UUID]:
    now = datetime.now(UTC)
    document = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"task": NOOP_TASK, "at": (now + timedelta(seconds=1)).isoformat()},
    }
    manifest = validate_manifest(document, now=now).manifest
    with engine.begin() as db:
        applied = apply_schedule(db, manifest, now=now)
    try:
        yield applied.id
    finally:
        with engine.begin() as db:
            delete_schedule(db, uid=applied.id, now=datetime.now(UTC))


def _stuck(run: lookups.RunView | None) -> str:
    if run is None:
        return "no run was planned: is Beat running against this database?"
    if run.state == RunState.PLANNED:
        return f"run {run.id} was never published: is Beat connected to the broker?"
    if run.state == RunState.ENQUEUED:
        return f"run {run.id} was published but no worker started it: is one consuming its queue?"
    return f"run {run.id} is still {run.state}"
