"""`beatkeeper trigger` and `backfill`: runs planned by hand, besides a schedule's own.

Both only insert ``planned`` runs (``beatkeeper.store.requests``, ``backfills``) and leave
publishing to Beat, so a run made by hand goes through exactly the path a scheduled one
does. A backfill asks before planning many runs: past ones all start at once.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import click
from rich.progress import Progress

from beatkeeper.cli.output import EXIT_USAGE, UserError, stderr
from beatkeeper.cli.runs import allowed, asked
from beatkeeper.cli.store import database, schedule_name
from beatkeeper.spec import to_instant
from beatkeeper.spec.types import parse_time
from beatkeeper.store import Engine, backfills, lookups, requests

__all__ = ["backfill", "trigger"]

#: A backfill of more new runs than this asks first (or needs --yes).
CONFIRM_ABOVE = 10
_BATCH = 1000


@click.command("trigger")
@click.argument("schedule", metavar="NAMESPACE/NAME")
def trigger(schedule: str) -> None:
    """Run a schedule now, once, besides its regular runs (origin manual).

    \b
    Examples:
      beatkeeper trigger billing/nightly-invoices
      beatkeeper trigger default/events-complete-ended && beatkeeper runs --since 5m
    """
    namespace, name = schedule_name(schedule)
    with database() as engine, engine.begin() as db:
        found = asked(lambda: lookups.find_schedule(db, namespace, name))
        allowed(found)
        run_id = requests.trigger(db, found, now=datetime.now(UTC))
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
    namespace, name = schedule_name(schedule)
    with database() as engine:
        with engine.connect() as db:
            found = asked(lambda: lookups.find_schedule(db, namespace, name))
            allowed(found)
            zone = ZoneInfo(found.spec.time_zone)
            window = (_instant(start, zone, "--from"), _instant(end, zone, "--to"))
            limit = backfills.MAX_BACKFILL
            planned = asked(lambda: backfills.occurrences_between(found, *window, limit=limit))
            existing = backfills.already_planned(db, found, planned)
        if dry_run:
            _list_occurrences(found, planned, existing, zone)
            return
        _confirm(found, [moment for moment in planned if moment not in existing], yes=yes)
        new = _plan_backfill(engine, found, planned)
    click.echo(
        f"{found.key}: {len(planned)} occurrence(s) in the window, {new} run(s) planned, "
        f"{len(planned) - new} already had one"
    )


def _plan_backfill(engine: Engine, found: lookups.ScheduleRef, planned: list[datetime]) -> int:
    new = 0
    with Progress(console=stderr, transient=True) as progress:
        bar = progress.add_task(f"planning {found.key}", total=len(planned))
        for first in range(0, len(planned), _BATCH):
            batch = planned[first : first + _BATCH]
            with engine.begin() as db:
                new += backfills.backfill(db, found, batch, now=datetime.now(UTC))
            progress.advance(bar, len(batch))
    return new


def _list_occurrences(
    found: lookups.ScheduleRef, planned: list[datetime], existing: set[datetime], zone: ZoneInfo
) -> None:
    for moment in planned:
        local = moment.astimezone(zone).isoformat()
        click.echo(f"{local}  {'already has a run' if moment in existing else 'would be planned'}")
    click.echo(
        f"dry run: {found.key}: {len(planned)} occurrence(s) in the window, "
        f"{len(planned) - len(existing)} would be planned, {len(existing)} already have one"
    )


def _confirm(found: lookups.ScheduleRef, new: list[datetime], *, yes: bool) -> None:
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


def _instant(text: str, zone: ZoneInfo, flag: str) -> datetime:
    try:
        return to_instant(parse_time(text), zone)
    except ValueError as exc:
        raise UserError(f"{flag}: {exc}", code=EXIT_USAGE) from None
