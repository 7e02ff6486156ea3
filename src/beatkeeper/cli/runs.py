"""`beatkeeper runs`: list runs (``beatkeeper.store.lookups``), or replay a dead one.

A replay only inserts a ``planned`` run (``beatkeeper.store.requests``) and leaves
publishing to Beat, so a run made by hand goes through exactly the path a scheduled one
does. The helpers the other run commands share (`trigger`, `backfill`, `smoke`) live here
too: the policy check, store refusals as one line, and durations as people read them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import click
from rich.table import Table
from rich.text import Text

from beatkeeper.cli.output import EXIT_USAGE, OUTPUT, UserError, stderr, stdout
from beatkeeper.cli.store import database, schedule_name
from beatkeeper.cli.validate import tenancy_policy
from beatkeeper.durations import DURATION_PATTERN, parse_duration
from beatkeeper.spec.types import parse_time
from beatkeeper.states import RunState
from beatkeeper.store import lookups, requests

__all__ = ["allowed", "asked", "runs", "span"]

#: The fewest hex digits of a run id `runs replay` accepts (as git's short hashes).
MIN_ID_PREFIX = 8
_ID_PREFIX = re.compile(r"[0-9a-f]{8}(-?[0-9a-f]+)*-?")
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
    namespace, name = schedule_name(schedule) if schedule else (None, None)
    after = _since(since, now) if since else None
    with database() as engine, engine.connect() as db:
        found = lookups.list_runs(
            db,
            namespace=namespace,
            name=name,
            states=[RunState(state) for state in states],
            since=after,
            limit=limit + 1,  # one more than shown tells whether the limit cut the list
        )
        if not found and namespace and name and not lookups.ever_existed(db, namespace, name):
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
        old = asked(lambda: lookups.find_run_id(db, prefix))
        new = asked(lambda: requests.replay(db, old, now=datetime.now(UTC)))
        allowed(new.schedule)  # the rollback undoes the replay
    schedule = new.schedule
    click.echo(
        f"run {new.run_id} planned, due now (replay of {old}, as {schedule.key}'s current "
        f"spec: task {schedule.task})"
    )


def allowed(schedule: lookups.ScheduleRef) -> None:
    """A run the tenancy policy forbids is not planned (Beat and workers refuse it anyway)."""
    forbidden = tenancy_policy().forbids(namespace=schedule.namespace, task=schedule.task)
    if forbidden is not None:
        raise UserError(f"{schedule.key}: {forbidden}; nothing planned")


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


def asked(action: Callable[[], _T]) -> _T:
    """``action()``, a store's refusal (no such schedule or run, ...) as a ``UserError``."""
    try:
        return action()
    except (lookups.NotFoundError, lookups.RefusedError) as exc:
        raise UserError(str(exc)) from None


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


def _json(run: lookups.RunView) -> dict[str, Any]:
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


def _table(found: list[lookups.RunView], *, with_schedule: bool) -> None:
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


def _row(run: lookups.RunView, *, with_schedule: bool) -> list[str]:
    lag = run.started_at - run.due_at if run.started_at else None
    took = run.finished_at - run.started_at if run.finished_at and run.started_at else None
    return [
        str(run.id),
        *([run.schedule] if with_schedule else []),
        run.planned_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
        run.state,
        run.origin,
        f"{run.attempt}/{run.max_attempts}",
        span(lag) if lag is not None else "",
        span(took) if took is not None else "",
        # A run that succeeded in the end keeps an earlier attempt's error for the record
        # (JSON output), but showing it beside "succeeded" reads as a failure.
        "" if run.state == RunState.SUCCEEDED else _first_line(run.error),
    ]


def span(value: timedelta) -> str:
    """A duration as people read it: 850ms, 2.50s, 3m05s, 1h02m."""
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
