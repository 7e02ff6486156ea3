"""``beatkeeper operator``: exec ``python -m beatkeeper_operator`` in place of this process.

The core must not import the operator package (import-linter), so this command only
replaces the process; signals and the exit status are the operator's own.
"""

from __future__ import annotations

import os
import sys

import click


# No help option of its own: `--help` goes to the operator, which lists its options.
@click.command(context_settings={"ignore_unknown_options": True}, add_help_option=False)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def operator(args: tuple[str, ...]) -> None:
    """Run the Kubernetes operator (kopf) that reconciles Schedules into the database.

    Takes the options of `beatkeeper-operator --help` and the same BEATKEEPER_ settings as
    every component; the cluster comes from the in-cluster config or the current kubeconfig
    context.

    \b
    Examples:
      BEATKEEPER_DATABASE_URL=postgresql://localhost/app beatkeeper operator
      beatkeeper operator --namespace billing --namespace ops
    """
    os.execvp(sys.executable, [sys.executable, "-m", "beatkeeper_operator", *args])  # noqa: S606
