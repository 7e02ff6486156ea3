"""Commands that change the database directly: `apply`, `delete`, `migrate`.

For users without a cluster (and for `beatkeeper dev`): `apply` runs the same reconcile the
operator runs. Every manifest is validated, and checked against the tenancy policy, before
anything is written, and all of them are applied in one transaction, so a bad or forbidden
file leaves the database exactly as it was.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import click

from beatkeeper.cli.output import EXIT_USAGE, UserError, stderr
from beatkeeper.cli.validate import PATHS, report, tenancy_policy
from beatkeeper.dev.servers import running_stack
from beatkeeper.manifests import Checked, check_paths
from beatkeeper.policy import Policy
from beatkeeper.problems import SpecError
from beatkeeper.settings import Settings, SettingsError, mask_url
from beatkeeper.spec import split_name
from beatkeeper.store import DatabaseUnavailable, Engine, make_engine
from beatkeeper.store.schedules import apply_schedule, delete_schedule


@contextmanager
def database(*, migrated: bool = True) -> Iterator[Engine]:
    """An engine for `BEATKEEPER_DATABASE_URL`; every failure becomes one clear line.

    Unset, it is the database of the `beatkeeper dev` running from this folder, if any.
    """
    try:
        settings = Settings.from_env()
        if settings.database_url is None and (stack := running_stack()):
            settings = Settings.from_env(os.environ | stack)
        if settings.database_url is None:
            try:
                settings.require_database_url()
            except SettingsError as unset:
                raise UserError(f"{unset}, or run `beatkeeper dev` in this folder") from None
        engine = make_engine(settings, application_name="beatkeeper-cli")
        if migrated:
            _require_current_schema(engine, settings)
        yield engine
    except SettingsError as exc:
        raise UserError(str(exc)) from None
    except DatabaseUnavailable as exc:
        raise UserError(str(exc)) from None


def _require_current_schema(engine: Engine, settings: Settings) -> None:
    from beatkeeper.store.migrate import current_revision, head_revision  # noqa: PLC0415 - slow

    current, head = current_revision(engine), head_revision()
    where = f"schema {settings.db_schema!r} at {mask_url(settings.require_database_url())}"
    if current is None:
        raise UserError(f"{where} has no beatkeeper tables: run `beatkeeper migrate` first")
    if current != head:
        raise UserError(
            f"{where} is at migration {current}, this beatkeeper needs {head}: "
            "run `beatkeeper migrate` (or upgrade beatkeeper if the database is newer)"
        )


@click.command("apply")
@PATHS
def apply(paths: tuple[str, ...]) -> None:
    """Create or update Schedules straight in the database (no cluster needed).

    Validates every manifest first; applies all of them in one transaction or none.
    A Schedule the tenancy policy (BEATKEEPER_POLICY_FILE) forbids stops the whole apply.
    A manifest without metadata.uid keeps the id of the schedule of that name (a new one
    gets a random id); a uid that belongs to another Schedule is refused.

    \b
    Examples:
      BEATKEEPER_DATABASE_URL=postgresql://localhost/app beatkeeper apply -f schedules/
    """
    now = datetime.now(UTC)
    checked = check_paths(paths, now=now)
    report(checked)
    if checked.problems:
        raise UserError(f"{len(checked.problems)} problem(s): nothing applied")
    if not checked.valid:
        raise UserError(f"{checked.nothing_found()}: nothing applied")
    _refuse_forbidden(checked, tenancy_policy())
    with database() as engine, engine.begin() as db:
        results = []
        for document, validated in checked.valid:
            try:
                results.append(apply_schedule(db, validated.manifest, now=now))
            except SpecError as refused:  # the rollback undoes the ones applied before
                raise UserError(f"{document.source}: {refused}; nothing applied") from None
    for result in results:
        when = result.next_run_at.isoformat() if result.next_run_at else "none"
        click.echo(f"{result.namespace}/{result.name} {result.action} (next run {when})")


def _refuse_forbidden(checked: Checked, policy: Policy) -> None:
    """Apply is all or nothing: one Schedule the policy forbids stops the whole apply."""
    for document, validated in checked.valid:
        meta, spec = validated.manifest.metadata, validated.manifest.spec
        refused = policy.refuses_schedule(
            namespace=meta.namespace, task=spec.task, queue=spec.queue
        )
        if refused is not None:
            raise UserError(f"{document.source}: {refused}; nothing applied")


@click.command("delete")
@click.option("-f", "--filename", "paths", multiple=True, type=click.Path(), help="Manifests.")
@click.argument("names", nargs=-1, metavar="[NAMESPACE/NAME]...")
def delete(paths: tuple[str, ...], names: tuple[str, ...]) -> None:
    """Delete Schedules: planned runs are cancelled, run history is kept.

    \b
    Examples:
      beatkeeper delete -f schedule.yaml
      beatkeeper delete billing/nightly-invoices
    """
    targets = [schedule_name(n) for n in names]
    if paths:
        checked = check_paths(paths, now=datetime.now(UTC))
        report(checked)
        if checked.problems:
            raise UserError(f"{len(checked.problems)} problem(s): nothing deleted")
        targets += [
            (v.manifest.metadata.namespace, v.manifest.metadata.name) for _, v in checked.valid
        ]
    if not targets:
        raise UserError("give -f FILE or NAMESPACE/NAME", code=EXIT_USAGE)
    now = datetime.now(UTC)
    with database() as engine, engine.begin() as db:
        found = [delete_schedule(db, namespace=ns, name=n, now=now) for ns, n in targets]
    missing = []
    for (namespace, name), deleted in zip(targets, found, strict=True):
        if deleted:
            click.echo(f"{namespace}/{name} deleted")
        else:
            missing.append(f"{namespace}/{name}")
    if missing:
        raise UserError(f"no live schedule {', '.join(missing)}: nothing to delete")


def schedule_name(text: str) -> tuple[str, str]:
    """``(namespace, name)`` of a NAMESPACE/NAME (or NAME) argument; a usage error if not one."""
    try:
        return split_name(text)
    except ValueError as exc:
        raise UserError(str(exc), code=EXIT_USAGE) from None


@click.command("migrate")
@click.option("--wait", is_flag=True, help="Only wait until another process has migrated.")
@click.option("--timeout", default=300, show_default=True, type=click.IntRange(1), help="Seconds.")
def migrate(wait: bool, timeout: int) -> None:
    """Upgrade the database at BEATKEEPER_DATABASE_URL to this version's schema.

    Safe to run from several places at once (an advisory lock serialises them).
    With --wait it never migrates: it waits until the schema is current (for init
    containers that start before the migration Job has finished).

    \b
    Examples:
      beatkeeper migrate
      beatkeeper migrate --wait --timeout 300
    """
    from beatkeeper.store import migrate as migrations  # noqa: PLC0415 - slow import

    with database(migrated=False) as engine:
        head = migrations.head_revision()
        if not wait:
            migrations.upgrade(engine)
            stderr.print(f"database at migration {head}", markup=False)
            return
        deadline = time.monotonic() + timeout
        while (current := _revision_or_reason(engine)) != head:
            if time.monotonic() > deadline:
                raise UserError(
                    f"the schema did not reach migration {head} within {timeout}s: {current}"
                )
            time.sleep(2)  # another process migrates; there is nothing to subscribe to
        stderr.print(f"database at migration {head}", markup=False)


def _revision_or_reason(engine: Engine) -> str:
    """The schema's revision, or why it has none yet (an init container may start first)."""
    from beatkeeper.store import migrate as migrations  # noqa: PLC0415 - slow import

    try:
        current = migrations.current_revision(engine)
    except DatabaseUnavailable as error:
        return f"database not reachable yet ({' '.join(str(error).split())[:200]})"
    return current or "not migrated yet"
