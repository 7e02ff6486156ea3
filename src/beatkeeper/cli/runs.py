"""Commands about runs: `runs` (list, `runs replay ID`), `trigger`, `backfill` and `smoke`.

Listing reads the runs table; the other commands only insert ``planned`` runs (through
``beatkeeper.store.history``) and leave publishing to Beat, so a run made by hand goes
through exactly the path a scheduled one does. `smoke` checks that whole path end to end:
it applies a throwaway Schedule of ``beatkeeper.noop``, waits for a run of it to succeed
and deletes the Schedule again, whatever happened (the Helm chart's test pod runs it).
"""

from __future__ import annotations

import json
import re
import secrets
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import click
from rich.progress import Progress
from rich.table import Table
from rich.text import Text
from sqlalchemy import Engine

from beatkeeper.cli.output import EXIT_USAGE, OUTPUT, UserError, stderr, stdout
from beatkeeper.cli.store import database
from beatkeeper.cli.validate import tenancy_policy
from beatkeeper.durations import DURATION_PATTERN, parse_duration
from beatkeeper.spec import to_instant, validate_manifest
from beatkeeper.spec.types import parse_time
from beatkeeper.states import FINAL, RunState
from beatkeeper.store import history
from beatkeeper.store.schedules import apply_schedule, delete_schedule

__all__ = ["backfill", "runs", "smoke", "trigger"]

NOOP_TASK = "beatkeeper.noop"  # registered by beatkeeper_worker.tasks
#: A backfill of more new runs than this asks first (or needs --yes).
CONFIRM_ABOVE = 10
#: The fewest hex digits of a run id `runs replay` accepts (as git's short hashes).
MIN_ID_PREFIX = 8
_ID_PREFIX = re.compile(r"[0-9a-f]{8}(-?[0-9a-f]+)*-?")
_BATCH = 1000
_T = TypeVar("_T")


class _RunsGroup(click.Group):
    """`runs [SCHEDULE] [OPTIONS]` lists (it means `runs list …`); `runs replay ID` replays,
    `runs cancel ID` (``beatkeeper.cli.cancel``) cancels."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ("-h", "--help")):
            args = ["list", *args]
        return super().parse_args(ctx, args)

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """`runs --help` shows the listing's options too: listing is what `runs` does."""
        listing = self.commands["list"]
        rows = [
            record
            for param in listing.get_params(ctx)
            if isinstance(param, click.Option) and "--help" not in param.opts
            if (record := param.get_help_record(ctx))
        ]
        with formatter.section("Listing options (runs [NAMESPACE/NAME] [OPTIONS])"):
            formatter.write_dl(rows)
        super().format_options(ctx, formatter)

    def format_usage(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        usage = "[NAMESPACE/NAME] [OPTIONS]  |  replay ID  |  cancel ID"
        formatter.write_usage(ctx.command_path, usage)


@click.group("runs", cls=_RunsGroup)
def runs() -> None:
    """List runs, newest first, replay a dead one, or cancel one.

    \b
    Examples:
      beatkeeper runs
      beatkeeper runs billing/nightly-invoices --state failed --state dead
      beatkeeper runs --since 2h -o json
      beatkeeper runs replay 3f2b9c1e
      beatkeeper runs cancel 3f2b9c1e
    """


@runs.command("list")
@click.argument("schedule", required=False, metavar="[NAMESPACE/NAME]")
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Choice([state.value for state in RunState]),
    help="Only runs in this state; repeat for more.",
)
@click.option("--since", help="Planned at or after: an RFC 3339 time, or a duration ago (2h).")
@click.option(
    "--limit", default=50, show_default=True, type=click.IntRange(1, 100_000),
    help="At most this many runs (the newest); says so when more match.",
)  # fmt: skip
@OUTPUT
def list_runs(
    schedule: str | None, states: tuple[str, ...], since: str | None, limit: int, fmt: str
) -> None:
    """List runs of every schedule, or of NAMESPACE/NAME (deleted ones included).

    \b
    Examples:
      beatkeeper runs list billing/nightly-invoices --state dead
      beatkeeper runs list --since 2026-03-01T00:00Z -o json
    """
    now = datetime.now(UTC)
    namespace, name = _split(schedule) if schedule else (None, None)
    after = _since(since, now) if since else None
    with database() as engine, engine.connect() as db:
        found = history.list_runs(
            db,
            namespace=namespace,
            name=name,
            states=[RunState(state) for state in states],
            since=after,
            limit=limit + 1,  # one more than shown tells whether the limit cut the list
        )
        if not found and namespace and name and not history.ever_existed(db, namespace, name):
            raise UserError(f"no schedule {namespace}/{name} (live or deleted)")
    if len(found) > limit:
        found = found[:limit]
        stderr.print(
            f"showing the newest {limit} runs; older ones match too "
            "(raise --limit, or narrow with --since or --state)",
            markup=False,
        )
    if fmt == "json":
        click.echo(json.dumps([_json(run) for run in found], indent=2))
    else:
        _table(found, with_schedule=schedule is None)


@runs.command("replay")
@click.argument("run_id", metavar="ID")
def replay(run_id: str) -> None:
    """Run a dead or failed run again, as a new run (origin replay) due now.

    The new run uses the schedule's current spec (task, args/kwargs, queue), not what the
    old run ran; a run of a deleted schedule, or one whose task the tenancy policy
    (BEATKEEPER_POLICY_FILE) now forbids, is not replayed. ID is a run id as `beatkeeper
    runs` lists it, or its first 8 or more characters.

    \b
    Examples:
      beatkeeper runs replay 3f2b9c1e
      beatkeeper runs replay 3f2b9c1e-0d4a-4c55-9a51-6f0e2c9b7d10
    """
    prefix = id_prefix(run_id)
    with database() as engine, engine.begin() as db:
        old = _asked(lambda: history.find_run_id(db, prefix))
        new = _asked(lambda: history.replay(db, old, now=datetime.now(UTC)))
        _allowed(new.schedule)  # the rollback undoes the replay
    schedule = new.schedule
    click.echo(
        f"run {new.run_id} planned, due now (replay of {old}, as {schedule.key}'s current "
        f"spec: task {schedule.task})"
    )


def _allowed(schedule: history.ScheduleRef) -> None:
    """A run the tenancy policy forbids is not planned (Beat and workers refuse it anyway)."""
    forbidden = tenancy_policy().forbids(namespace=schedule.namespace, task=schedule.task)
    if forbidden is not None:
        raise UserError(f"{schedule.key}: {forbidden}; nothing planned")


@click.command("trigger")
@click.argument("schedule", metavar="NAMESPACE/NAME")
def trigger(schedule: str) -> None:
    """Run a schedule now, once, besides its regular runs (origin manual).

    \b
    Examples:
      beatkeeper trigger billing/nightly-invoices
      beatkeeper trigger default/events-complete-ended && beatkeeper runs --since 5m
    """
    namespace, name = _split(schedule)
    with database() as engine, engine.begin() as db:
        found = _asked(lambda: history.find_schedule(db, namespace, name))
        _allowed(found)
        run_id = history.trigger(db, found, now=datetime.now(UTC))
    click.echo(f"run {run_id} of {found.key} planned, due now")


@click.command("backfill")
@click.argument("schedule", metavar="NAMESPACE/NAME")
@click.option("--from", "start", required=True, help="RFC 3339, or a local time in the zone.")
@click.option("--to", "end", required=True, help="RFC 3339, or a local time in the zone.")
@click.option("--dry-run", is_flag=True, help="List the occurrences; plan nothing.")
@click.option(
    "--yes", "-y", is_flag=True, help=f"Plan more than {CONFIRM_ABOVE} runs without asking."
)
def backfill(schedule: str, start: str, end: str, dry_run: bool, yes: bool) -> None:
    """Plan a run for every occurrence between --from and --to (both included).

    Occurrences that already have a run are left alone, so a backfill can be repeated.
    Local times without an offset are read in the schedule's time zone. A window
    holds at most 1,000 occurrences. Past occurrences are due at once: their
    startingDeadline and expires count from the backfill, not from their planned
    time. More than 10 new runs are planned only after a confirmation (or --yes).

    \b
    Examples:
      beatkeeper backfill billing/nightly --from 2026-03-01 --to 2026-03-31T23:59 --dry-run
      beatkeeper backfill billing/nightly --from 2026-03-01 --to 2026-03-31T23:59 --yes
    """
    namespace, name = _split(schedule)
    with database() as engine:
        with engine.connect() as db:
            found = _asked(lambda: history.find_schedule(db, namespace, name))
            _allowed(found)
            zone = ZoneInfo(found.spec.time_zone)
            window = (_instant(start, zone, "--from"), _instant(end, zone, "--to"))
            limit = history.MAX_BACKFILL
            planned = _asked(lambda: history.occurrences_between(found, *window, limit=limit))
            existing = history.already_planned(db, found, planned)
        if dry_run:
            _list_occurrences(found, planned, existing, zone)
            return
        _confirm(found, [moment for moment in planned if moment not in existing], yes=yes)
        new = _plan_backfill(engine, found, planned)
    click.echo(
        f"{found.key}: {len(planned)} occurrence(s) in the window, {new} run(s) planned, "
        f"{len(planned) - new} already had one"
    )


def _plan_backfill(engine: Engine, found: history.ScheduleRef, planned: list[datetime]) -> int:
    new = 0
    with Progress(console=stderr, transient=True) as progress:
        bar = progress.add_task(f"planning {found.key}", total=len(planned))
        for first in range(0, len(planned), _BATCH):
            batch = planned[first : first + _BATCH]
            with engine.begin() as db:
                new += history.backfill(db, found, batch, now=datetime.now(UTC))
            progress.advance(bar, len(batch))
    return new


def _list_occurrences(
    found: history.ScheduleRef, planned: list[datetime], existing: set[datetime], zone: ZoneInfo
) -> None:
    for moment in planned:
        local = moment.astimezone(zone).isoformat()
        click.echo(f"{local}  {'already has a run' if moment in existing else 'would be planned'}")
    click.echo(
        f"dry run: {found.key}: {len(planned)} occurrence(s) in the window, "
        f"{len(planned) - len(existing)} would be planned, {len(existing)} already have one"
    )


def _confirm(found: history.ScheduleRef, new: list[datetime], *, yes: bool) -> None:
    """Ask before planning many runs: past ones all start at once."""
    if yes or len(new) <= CONFIRM_ABOVE:
        return
    now = datetime.now(UTC)
    at_once = sum(1 for moment in new if moment <= now)
    what = f"{len(new)} new run(s) of {found.key}, {at_once} of them due now"
    if not sys.stdin.isatty():
        raise UserError(f"{what}: check them with --dry-run, then pass --yes to plan them")
    if not click.confirm(f"plan {what}?", default=False, err=True):
        raise UserError("nothing planned")


@click.command("smoke")
@click.option("--timeout", default=180, show_default=True, type=click.IntRange(1), help="Seconds.")
@click.option(
    "--namespace", default="default", show_default=True, help="Of the throwaway Schedule."
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
    lag = _span(run.started_at - run.planned_at) if run.started_at else "?"
    click.echo(f"smoke test passed: run {run.id} of {namespace}/{name} succeeded, {lag} late")


def _succeeded_run(engine: Engine, schedule_id: uuid.UUID, *, timeout: int) -> history.RunView:
    deadline = time.monotonic() + timeout
    while True:
        with engine.connect() as db:
            run = history.latest_run(db, schedule_id)
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
        "apiVersion": "beatkeeper.io/v1alpha1",
        "kind": "Schedule",
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


def _stuck(run: history.RunView | None) -> str:
    if run is None:
        return "no run was planned: is Beat running against this database?"
    if run.state == RunState.PLANNED:
        return f"run {run.id} was never published: is Beat connected to the broker?"
    if run.state == RunState.ENQUEUED:
        return f"run {run.id} was published but no worker started it: is one consuming its queue?"
    return f"run {run.id} is still {run.state}"


def id_prefix(text: str) -> str:
    """A run id or its first characters (at least ``MIN_ID_PREFIX`` hex digits)."""
    cleaned = text.strip().lower()
    if not _ID_PREFIX.fullmatch(cleaned) or len(cleaned.replace("-", "")) < MIN_ID_PREFIX:
        raise UserError(
            f"{text!r} is not a run id: give the id `beatkeeper runs` lists, "
            f"or its first {MIN_ID_PREFIX} or more characters",
            code=EXIT_USAGE,
        )
    return cleaned


def _asked(action: Callable[[], _T]) -> _T:
    try:
        return action()
    except (history.NotFoundError, history.RefusedError) as exc:
        raise UserError(str(exc)) from None


def _split(text: str) -> tuple[str, str]:
    namespace, slash, name = text.partition("/")
    if not slash or not namespace or not name:
        raise UserError(f"{text!r}: write NAMESPACE/NAME", code=EXIT_USAGE)
    return namespace, name


def _since(text: str, now: datetime) -> datetime:
    try:
        return now - parse_duration(text)
    except ValueError as exc:
        if re.fullmatch(DURATION_PATTERN, text.strip()):  # a duration, but too long
            raise UserError(f"--since: {exc}", code=EXIT_USAGE) from None
    try:
        value = parse_time(text)
    except ValueError as exc:
        raise UserError(f"--since: {exc}, or a duration such as 2h", code=EXIT_USAGE) from None
    if value.tzinfo is None:
        raise UserError(f"--since: {text!r} has no UTC offset (add Z or +01:00)", code=EXIT_USAGE)
    return value


def _instant(text: str, zone: ZoneInfo, flag: str) -> datetime:
    try:
        return to_instant(parse_time(text), zone)
    except ValueError as exc:
        raise UserError(f"{flag}: {exc}", code=EXIT_USAGE) from None


def _json(run: history.RunView) -> dict[str, Any]:
    def when(value: datetime | None) -> str | None:
        return None if value is None else value.isoformat()

    return {
        "id": str(run.id),
        "schedule": run.schedule,
        "planned_at": when(run.planned_at),
        "state": run.state,
        "attempt": run.attempt,
        "max_attempts": run.max_attempts,
        "origin": run.origin,
        "due_at": when(run.due_at),
        "enqueued_at": when(run.enqueued_at),
        "started_at": when(run.started_at),
        "finished_at": when(run.finished_at),
        "worker": run.worker,
        "result": run.result,
        "error": run.error,
        "replay_of": None if run.replay_of is None else str(run.replay_of),
    }


def _table(found: list[history.RunView], *, with_schedule: bool) -> None:
    if not found:
        click.echo("no runs")
        return
    headers = ["id", *(["schedule"] if with_schedule else []), "planned (UTC)", "state"]
    headers += ["origin", "attempt", "lag", "duration"]
    rows = [_row(run, with_schedule=with_schedule) for run in found]
    table = Table(title=f"{len(found)} run(s), newest first", title_justify="left")
    # Every column keeps its whole text (ids are copied into `runs replay`); only the
    # error gives way to the terminal's width, cut with an ellipsis.
    for index, header in enumerate(headers):
        width = max(len(header), *(len(row[index]) for row in rows))
        table.add_column(header, no_wrap=True, min_width=width)
    table.add_column("error")  # collapsible; its one line is cut, not wrapped
    for *row, error in rows:
        table.add_row(*row, Text(error, no_wrap=True, overflow="ellipsis"))
    stdout.print(table, soft_wrap=False)  # fit the width: the console soft-wraps otherwise


def _row(run: history.RunView, *, with_schedule: bool) -> list[str]:
    lag = run.started_at - run.due_at if run.started_at else None
    took = run.finished_at - run.started_at if run.finished_at and run.started_at else None
    return [
        str(run.id),
        *([run.schedule] if with_schedule else []),
        run.planned_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
        run.state,
        run.origin,
        f"{run.attempt}/{run.max_attempts}",
        _span(lag) if lag is not None else "",
        _span(took) if took is not None else "",
        # A run that succeeded in the end keeps an earlier attempt's error for the record
        # (JSON output), but showing it beside "succeeded" reads as a failure.
        "" if run.state == RunState.SUCCEEDED else _first_line(run.error),
    ]


def _span(value: timedelta) -> str:
    seconds = value.total_seconds()
    if abs(seconds) < 1:
        return f"{seconds * 1000:.0f}ms"
    if abs(seconds) < 60:
        return f"{seconds:.2f}s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}m{rest:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


def _first_line(error: str | None, width: int = 80) -> str:
    if not error:
        return ""
    line = error.splitlines()[0]
    return line if len(line) <= width else line[: width - 1] + "…"
