"""The `beatkeeper` command line: one group, one module per family of commands.

`main` is the console entry point. It turns every error a user can cause (a bad spec, an
unset or unreachable database, an unreadable file) into one clear line and an exit code,
never a traceback; programming errors still raise.
"""

from __future__ import annotations

import sys

import click

from beatkeeper import __version__
from beatkeeper.cli import (
    cancel,
    crd,
    dev,
    operator,
    preview,
    runs,
    smoke,
    store,
    trigger,
    validate,
)
from beatkeeper.cli.output import UserError, fail


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="beatkeeper")
def cli() -> None:
    """Celery schedules declared as Kubernetes resources, planned exactly once.

    \b
    Start with:
      beatkeeper preview --cron "0 9 * * 1-5" --timezone Europe/London
      beatkeeper validate -f manifests/examples/
      beatkeeper apply -f schedule.yaml      (needs BEATKEEPER_DATABASE_URL)
    """


runs.runs.add_command(cancel.cancel)
for command in (
    preview.preview,
    validate.validate,
    crd.crd,
    store.apply,
    store.delete,
    store.migrate,
    dev.dev,
    operator.operator,
    runs.runs,
    trigger.trigger,
    trigger.backfill,
    smoke.smoke,
):
    cli.add_command(command)


def main() -> None:
    """Console entry point."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        fail("aborted", code=130)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except UserError as exc:
        fail(str(exc), code=exc.code)
