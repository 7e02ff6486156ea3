"""How the CLI speaks: one error line on stderr, tables and JSON on stdout."""

from __future__ import annotations

import sys
from typing import NoReturn

import click
from rich.console import Console

#: Usage errors exit 2 (as click does), invalid input 1.
EXIT_INVALID, EXIT_USAGE = 1, 2

# Piped output is not cut to 80 columns: scripts and tests read whole table rows.
stdout = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 160)
stderr = Console(stderr=True, soft_wrap=True, highlight=False)


#: `--output/-o table|json`, the same on every command that prints records.
OUTPUT = click.option(
    "--output",
    "-o",
    "fmt",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="A table for people, or JSON for scripts.",
)


class UserError(Exception):
    """Something the user can fix; printed as one line, never as a traceback."""

    def __init__(self, message: str, *, code: int = EXIT_INVALID) -> None:
        super().__init__(message)
        self.code = code


def fail(message: str, *, code: int = EXIT_INVALID) -> NoReturn:
    """Print `beatkeeper: error: <message>` on stderr and exit with `code`."""
    stderr.print(f"beatkeeper: error: {message}", markup=False)
    sys.exit(code)


def warn(message: str) -> None:
    stderr.print(f"beatkeeper: warning: {message}", markup=False)
