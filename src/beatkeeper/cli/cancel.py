"""`beatkeeper runs cancel ID`: cancel a run, or have a running one stopped.

A run that has not started is cancelled in the database at once. A running one gets a cancel
request naming who asked; Beat revokes its Celery task and the run is recorded ``cancelled``
when its worker stopped it (``beatkeeper.store.cancellations``). The command only writes
the request: it never talks to the broker, and says in one line what will happen.
"""

from __future__ import annotations

import getpass
import socket
from datetime import UTC, datetime

import click

from beatkeeper.cli.output import UserError
from beatkeeper.cli.runs import id_prefix
from beatkeeper.cli.store import database
from beatkeeper.states import RunState
from beatkeeper.store import cancellations, lookups

__all__ = ["cancel"]


@click.command("cancel")
@click.argument("run_id", metavar="ID")
def cancel(run_id: str) -> None:
    """Cancel a run: a planned, enqueued or retrying one at once; a running one is stopped.

    A running run's Celery task is revoked by Beat (its pool process is sent SIGTERM;
    prefork workers only), and the run is recorded cancelled once it stopped, or after
    60 seconds if no worker says so. A run that finishes first keeps its outcome. Asking
    again does nothing. ID is a run id as `beatkeeper runs` lists it, or its first 8 or
    more characters.

    \b
    Examples:
      beatkeeper runs cancel 3f2b9c1e
      beatkeeper runs cancel 3f2b9c1e && beatkeeper runs --state cancelled --since 5m
    """
    prefix = id_prefix(run_id)
    with database() as engine, engine.begin() as db:
        try:
            found = lookups.find_run_id(db, prefix)
            done = cancellations.request(db, found, reason=_reason(), now=datetime.now(UTC))
        except (lookups.NotFoundError, lookups.RefusedError) as exc:
            raise UserError(str(exc)) from None
    click.echo(_said(done))


def _reason() -> str:
    """Who asked, as the run's error will say."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no login name (a container's bare uid)
        user = "an unknown user"
    return f"cancelled on request (beatkeeper runs cancel, by {user} on {socket.gethostname()})"


def _said(done: cancellations.Cancel) -> str:
    run = done.run_id
    if done.asked is cancellations.Asked.CANCELLED:
        return f"run {run} cancelled (it was {done.state}); it will not run"
    if done.asked is cancellations.Asked.REQUESTED:
        return (
            f"cancel requested; run {run} is running on {done.worker or 'a worker'}; "
            "it will be stopped"
        )
    if done.state is RunState.CANCELLED:
        return f"run {run} was cancelled already; nothing to do"
    asked = done.requested_at.isoformat(timespec="seconds") if done.requested_at else "before"
    if done.state is RunState.RUNNING:
        return f"run {run}: a cancel was requested at {asked} already; it will be stopped"
    return f"run {run} ended {done.state} before the cancel asked at {asked} took effect"
