"""`beatkeeper preview`: the next occurrences of a schedule, from a manifest or from flags.

Flags build the same spec a manifest would and go through the same validation, so a
preview never disagrees with what the scheduler will do. A file with several Schedules
previews each of them, or the one `--name` chooses. JSON output is a list of ISO-8601
instants carrying their UTC offset in the schedule's time zone (for several Schedules, an
object of such lists keyed by NAMESPACE/NAME); the table shows local and UTC times and marks
where the UTC offset changed (a DST transition) since the previous one.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import click
from rich.table import Table

from beatkeeper.cli.output import EXIT_USAGE, OUTPUT, UserError, stdout, warn
from beatkeeper.manifests import check_paths
from beatkeeper.problems import SpecError
from beatkeeper.spec import (
    API_VERSION,
    KIND,
    Validated,
    recurrence_of,
    to_instant,
    validate_manifest,
)
from beatkeeper.spec.types import parse_time

_FLAGS = {
    "spec.cron": "--cron",
    "spec.interval": "--interval",
    "spec.rrule": "--rrule",
    "spec.at": "--at",
    "spec.timeZone": "--timezone",
    "spec.startTime": "--start",
    "spec.endTime": "--end",
}


@click.command("preview")
@click.option("-f", "--filename", "path", type=click.Path(), help="A Schedule manifest.")
@click.option(
    "--name", "chosen", metavar="[NAMESPACE/]NAME", help="With -f: only this Schedule of the file."
)
@click.option("--cron", help='A cron expression, e.g. "0 9 * * 1-5".')
@click.option("--interval", help="An interval, e.g. 15m or 1h30m.")
@click.option("--rrule", help='An RFC 5545 RRULE, e.g. "FREQ=WEEKLY;BYDAY=MO".')
@click.option("--at", "at_", metavar="TIME", help="One RFC 3339 instant.")
@click.option("--timezone", "zone", default=None, help="IANA time zone (default UTC).")
@click.option("--start", help="startTime: RFC 3339, or a local time in the zone.")
@click.option("--end", help="endTime: RFC 3339, or a local time in the zone.")
@click.option("--after", help="Show occurrences strictly after this time (default now).")
@click.option("--count", default=10, show_default=True, type=click.IntRange(1, 10_000))
@OUTPUT
def preview(**options: Any) -> None:
    """Show the next occurrences of a schedule.

    \b
    Examples:
      beatkeeper preview --cron "30 2 * * *" --timezone Europe/London --count 5
      beatkeeper preview --rrule "FREQ=MONTHLY;BYDAY=-1FR" --start 2026-01-01T18:00
      beatkeeper preview -f schedules.yaml --name billing/nightly-invoices
    """
    now = datetime.now(UTC)
    if options["chosen"] and not options["path"]:
        raise UserError("--name chooses a Schedule of -f FILE", code=EXIT_USAGE)
    chosen = _from_file(options, now) if options["path"] else [_from_flags(options, now)]
    found: dict[str, list[datetime]] = {}
    for validated in chosen:
        for problem in validated.warnings:
            warn(str(problem))
        meta = validated.manifest.metadata
        found[f"{meta.namespace}/{meta.name}"] = _occurrences(validated, options, now)
    if options["fmt"] == "json":
        shown = {key: [t.isoformat() for t in times] for key, times in found.items()}
        click.echo(json.dumps(shown if len(shown) > 1 else next(iter(shown.values())), indent=2))
        return
    for validated, (key, times) in zip(chosen, found.items(), strict=True):
        spec = validated.manifest.spec
        zone = ZoneInfo(spec.time_zone)
        after = _after(options["after"], zone, now)
        title = f"{key}: " if len(found) > 1 else ""
        _table(
            times, after.astimezone(zone), spec.time_zone,
            wall_clock=spec.interval is None, title=title,
        )  # fmt: skip


def _occurrences(validated: Validated, options: dict[str, Any], now: datetime) -> list[datetime]:
    manifest = validated.manifest
    spec = manifest.spec
    after = _after(options["after"], ZoneInfo(spec.time_zone), now)
    # Without a creation time, the schedule is taken to exist from --after on.
    created = manifest.metadata.creation_timestamp or after
    recurrence = recurrence_of(spec, seed=manifest.metadata.uid or "", created_at=created)
    return [t.astimezone(recurrence.zone) for t in recurrence.occurrences(after, options["count"])]


def _from_file(options: dict[str, Any], now: datetime) -> list[Validated]:
    given = [f"--{n}" for n in ("cron", "interval", "rrule", "start", "end") if options[n]]
    given += ["--at"] * bool(options["at_"]) + ["--timezone"] * bool(options["zone"])
    if given:
        raise UserError(f"-f and {', '.join(given)} do not go together", code=EXIT_USAGE)
    checked = check_paths([options["path"]], now=now)
    if checked.problems:
        source, problem = checked.problems[0]
        raise UserError(f"{source}: {problem}")
    if not checked.valid:
        raise UserError(f"{options['path']}: {checked.nothing_found()}")
    every = [validated for _, validated in checked.valid]
    return _choose(every, options["chosen"], options["path"]) if options["chosen"] else every


def _choose(every: list[Validated], chosen: str, path: str) -> list[Validated]:
    """The Schedule ``--name`` names (NAME, or NAMESPACE/NAME when a name repeats)."""
    names = [f"{v.manifest.metadata.namespace}/{v.manifest.metadata.name}" for v in every]
    matches = [v for v, key in zip(every, names, strict=True) if chosen in (key, key.split("/")[1])]
    if len(matches) == 1:
        return matches
    if not matches:
        raise UserError(f"--name {chosen}: {path} has no such Schedule (it has {', '.join(names)})")
    raise UserError(
        f"--name {chosen}: several Schedules of {path} have that name; give NAMESPACE/NAME"
    )


def _from_flags(options: dict[str, Any], now: datetime) -> Validated:
    spec: dict[str, Any] = {"task": "preview"}
    for flag, key in (
        ("cron", "cron"),
        ("interval", "interval"),
        ("rrule", "rrule"),
        ("at_", "at"),
    ):
        if options[flag]:
            spec[key] = options[flag]
    if not any(k in spec for k in ("cron", "interval", "rrule", "at")):
        raise UserError("give -f FILE or one of --cron, --interval, --rrule, --at", code=EXIT_USAGE)
    for flag, key in (("zone", "timeZone"), ("start", "startTime"), ("end", "endTime")):
        if options[flag]:
            spec[key] = options[flag]
    document = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": "preview"},
        "spec": spec,
    }
    try:
        return validate_manifest(document, now=now)
    except SpecError as exc:
        problem = exc.problems[0]
        name = _FLAGS.get(problem.path)
        if name is None and "exactly one of" in problem.message:
            raise UserError(
                "give only one of --cron, --interval, --rrule, --at", code=EXIT_USAGE
            ) from None
        raise UserError(f"{name}: {problem.message}" if name else str(problem)) from None


def _after(text: str | None, zone: ZoneInfo, now: datetime) -> datetime:
    if not text:
        return now
    try:
        value = parse_time(text)
    except ValueError as exc:
        raise UserError(f"--after: {exc}", code=EXIT_USAGE) from None
    return to_instant(value, zone)


def _table(
    times: list[datetime], after: datetime, zone_name: str, *, wall_clock: bool, title: str = ""
) -> None:
    """``wall_clock``: the times are read on the clock (not an interval's elapsed time)."""
    if not times:  # the warning printed with it says why
        stdout.print(f"{title}No occurrence after {after.astimezone(UTC):%Y-%m-%d %H:%M:%S}Z")
        return
    heading = f"{title}Next {len(times)} occurrence(s) in {zone_name}"
    table = Table(title=heading, title_justify="left")
    for name in ("#", "local time", "UTC", "note"):
        table.add_column(name)
    previous = after.utcoffset()
    for index, moment in enumerate(times, start=1):
        offset = moment.utcoffset()
        note = ""
        if offset != previous and previous is not None and offset is not None:
            note = f"UTC offset {_offset(previous)} -> {_offset(offset)} ({moment.tzname()})"
            note += _moved(moment, offset - previous) if wall_clock else ""
        table.add_row(
            str(index),
            f"{moment:%a %Y-%m-%d %H:%M:%S} {moment.tzname()}",
            f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S}Z",
            note,
        )
        previous = offset
    stdout.print(table)


def _moved(moment: datetime, shift: timedelta) -> str:
    """How a wall-clock time that did not exist that day (a spring-forward gap) moved."""
    if shift <= timedelta(0):
        return ""
    wanted = moment.replace(tzinfo=None) - shift
    resolved = wanted.replace(tzinfo=moment.tzinfo).astimezone(UTC).astimezone(moment.tzinfo)
    if resolved.replace(tzinfo=None) == wanted:
        return ""  # that wall time existed: the occurrence is simply after the change
    return f"; {wanted:%H:%M} did not exist that day: moved to {moment:%H:%M}"


def _offset(value: timedelta) -> str:
    minutes = int(value.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    hours, rest = divmod(abs(minutes), 60)
    return f"{sign}{hours:02d}:{rest:02d}"
