"""``beatkeeper operator``: exec ``python -m beatkeeper_operator`` in place of this process.

The core must not import the operator package (import-linter), so this command only
replaces the process; signals and the exit status are the operator's own.
"""

from __future__ import annotations

import os
import sys

import click


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def operator(args: tuple[str, ...]) -> None:
    """Run the Kubernetes operator (kopf) that reconciles Schedules into the database.

    Reads the same BEATKEEPER_ settings as every component (BEATKEEPER_NAMESPACES: the
    namespaces it watches, default all) and the cluster from the in-cluster config or
    the current kubeconfig context.

    \b
    Examples:
      BEATKEEPER_DATABASE_URL=postgresql://localhost/app beatkeeper operator
      BEATKEEPER_NAMESPACES=billing,ops beatkeeper operator
    """
    os.execvp(sys.executable, [sys.executable, "-m", "beatkeeper_operator", *args])  # noqa: S606
