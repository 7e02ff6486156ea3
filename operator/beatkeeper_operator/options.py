"""The operator's command line: what ``beatkeeper-operator`` (and ``beatkeeper operator``) take.

Options override the ``BEATKEEPER_*`` settings of the same meaning, under the names kopf's
own ``kopf run`` uses, so the chart's ``operator.extraArgs`` reads as kopf users expect.
``parse`` exits like every command-line tool: 0 after ``--help`` or ``--version``, 2 with
one line on stderr for an unknown or malformed argument. Nothing here starts anything.
"""

from __future__ import annotations

import argparse
import dataclasses
from importlib import metadata
from typing import NoReturn
from urllib.parse import urlsplit

from beatkeeper.settings import LogFormat, Settings, SettingsError, check_namespace

__all__ = ["DEFAULT_LIVENESS", "PROG", "Options", "apply", "parse"]

PROG = "beatkeeper-operator"
# The chart's liveness probe asks for :8080/healthz.
DEFAULT_LIVENESS = "http://0.0.0.0:8080/healthz"
DESCRIPTION = """\
Run the Kubernetes operator that reconciles Schedule resources into beatkeeper's database.
Settings come from the BEATKEEPER_* environment variables (BEATKEEPER_DATABASE_URL is
required; BEATKEEPER_NAMESPACES, BEATKEEPER_POLICY_FILE, BEATKEEPER_LOG_LEVEL,
BEATKEEPER_LOG_FORMAT and the validating webhook's BEATKEEPER_WEBHOOK_* are optional); the
options below override them."""
EPILOG = """\
examples:
  beatkeeper-operator                          every namespace (needs a ClusterRole)
  beatkeeper-operator -n team-a -n team-b      only these namespaces (a Role in each)
  beatkeeper-operator --verbose --log-format console"""


@dataclasses.dataclass(frozen=True)
class Options:
    """What the command line asked for; None: keep what the settings say."""

    namespaces: tuple[str, ...] | None = None
    liveness: str = DEFAULT_LIVENESS
    log_level: str | None = None
    log_format: LogFormat | None = None


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, not argparse's usage block: the chart's extraArgs end up in a pod log.
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def parse(argv: list[str]) -> Options:
    """The options in ``argv`` (without the program name); exits on --help or a bad one."""
    args = _parser().parse_args(argv)
    namespaces: tuple[str, ...] | None = None
    if args.all_namespaces:
        namespaces = ()
    elif args.namespace:
        namespaces = tuple(dict.fromkeys(name for group in args.namespace for name in group))
    return Options(
        namespaces=namespaces,
        liveness=args.liveness,
        log_level=_log_level(args),
        log_format=args.log_format,
    )


def apply(options: Options, settings: Settings) -> Settings:
    """``settings`` with what the command line overrides."""
    return dataclasses.replace(
        settings,
        namespaces=settings.namespaces if options.namespaces is None else options.namespaces,
        log_level=options.log_level or settings.log_level,
        log_format=options.log_format or settings.log_format,
    )


def _parser() -> _Parser:
    parser = _Parser(
        prog=PROG,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "-n", "--namespace", action="append", type=_namespaces, metavar="NAMESPACE",
        help="serve only this namespace (repeat it, or separate names with commas); "
        "overrides BEATKEEPER_NAMESPACES; the namespaces must exist",
    )  # fmt: skip
    scope.add_argument(
        "-A", "--all-namespaces", action="store_true",
        help="serve every namespace, even if BEATKEEPER_NAMESPACES lists some",
    )  # fmt: skip
    parser.add_argument(
        "--liveness", default=DEFAULT_LIVENESS, type=_liveness, metavar="URL",
        help=f"where kopf serves its liveness endpoint (default {DEFAULT_LIVENESS})",
    )  # fmt: skip
    parser.add_argument(
        "--log-format", choices=("json", "console"), help="overrides BEATKEEPER_LOG_FORMAT"
    )
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument(
        "-v", "--verbose", action="store_true", help="log at DEBUG (overrides BEATKEEPER_LOG_LEVEL)"
    )
    verbosity.add_argument("--debug", action="store_true", help="the same as --verbose")
    verbosity.add_argument(
        "-q", "--quiet", action="store_true", help="log warnings and errors only"
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    return parser


def _namespaces(value: str) -> list[str]:
    names = [name.strip() for name in value.split(",") if name.strip()]
    try:
        for name in names:
            check_namespace(name, "--namespace")
    except SettingsError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    if not names:
        raise argparse.ArgumentTypeError("--namespace needs a namespace name")
    return names


def _liveness(value: str) -> str:
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        port = None
        parts = urlsplit("")
    if parts.scheme != "http" or not parts.hostname or port is None:
        raise argparse.ArgumentTypeError(
            f"--liveness must be an http URL with a host and a port, "
            f"e.g. {DEFAULT_LIVENESS}; got {value!r}"
        )
    return value


def _log_level(args: argparse.Namespace) -> str | None:
    if args.verbose or args.debug:
        return "DEBUG"
    return "WARNING" if args.quiet else None


def _version() -> str:
    try:
        return metadata.version("beatkeeper")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "unknown"
