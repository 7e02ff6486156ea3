"""The ``kubectl beatkeeper`` command line: arguments, exit statuses, one-line errors.

Exit status 0 on success, 1 when the cluster refuses or cannot be reached (a line names the
object and the verb), 2 for a usage error.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

from beatkeeper_operator.plugin import commands
from beatkeeper_operator.plugin.cluster import ClusterError, connect

__all__ = ["main"]

EXAMPLES = """\
examples:
  kubectl beatkeeper trigger nightly -n team-a
  kubectl beatkeeper backfill nightly -n team-a --from 2026-01-01T00:00 --to 2026-01-02T00:00
  kubectl beatkeeper suspend nightly -n team-a
  kubectl beatkeeper resume nightly -n team-a
  kubectl beatkeeper runs nightly -n team-a
  kubectl beatkeeper runs -A
  kubectl beatkeeper replay nightly 1a2b3c4d -n team-a
  kubectl beatkeeper cancel nightly 1a2b3c4d -n team-a --context staging

Each command but runs sets an annotation (or spec.suspend) on the Schedule; the operator
acts on it once and posts an Event saying what it did (kubectl get events).
"""


def _version() -> str:
    try:
        return version("beatkeeper")
    except PackageNotFoundError:  # pragma: no cover (run from a source tree)
        return "unknown"


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="kubectl beatkeeper",
        description="Run, backfill, pause, resume, replay and cancel beatkeeper Schedules.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    top.add_argument("--version", action="version", version=f"kubectl-beatkeeper {_version()}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--context", help="the kubeconfig context to use (default: current)")
    common.add_argument("-n", "--namespace", help="the namespace (default: the context's)")
    subcommands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, text) in commands.COMMANDS.items():
        command = subcommands.add_parser(
            name,
            help=text,
            description=text,
            epilog=_examples_of(name),
            formatter_class=argparse.RawDescriptionHelpFormatter,
            parents=[common],
        )
        command.add_argument("name", metavar="NAME", help="the Schedule's name")
        if name in {"replay", "cancel"}:
            command.add_argument("run", metavar="RUN", help="run id, or its first 8+ characters")
        if name == "backfill":
            zone = "; without an offset, read in the Schedule's timeZone"
            command.add_argument("--from", dest="start", required=True, help=f"a time{zone}")
            command.add_argument("--to", dest="end", required=True, help=f"a time{zone}")
    runs = subcommands.add_parser(
        "runs",
        help="the latest runs of a Schedule (or of all): ids, states, errors",
        description="The latest runs from the Schedules' status, newest first.",
        epilog=_examples_of("runs"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    runs.add_argument("name", metavar="NAME", nargs="?", help="one Schedule (default: all)")
    runs.add_argument("-A", "--all-namespaces", action="store_true", help="in every namespace")
    return top


def _examples_of(command: str) -> str:
    lines = [line for line in EXAMPLES.splitlines() if f"beatkeeper {command} " in line]
    return "examples:\n" + "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; see the module docstring for the exit status."""
    options = parser().parse_args(argv)
    try:
        sys.stdout.write(_run(options) + "\n")
    except commands.UsageError as exc:
        sys.stderr.write(f"kubectl beatkeeper: {exc}\n")
        return 2
    except ClusterError as exc:
        sys.stderr.write(f"kubectl beatkeeper: {exc}\n")
        return 1
    return 0


def _run(options: argparse.Namespace) -> str:
    if options.command == "runs" and options.all_namespaces and options.name:
        raise commands.UsageError("runs: give NAME or -A, not both")
    cluster = connect(options.context)
    namespace = options.namespace or cluster.namespace
    if options.command == "runs":
        if options.name:
            found = [cluster.get(namespace, options.name)]
        else:
            found = cluster.list(None if options.all_namespaces else namespace)
        return commands.runs_table(found, with_namespace=options.all_namespaces)
    action, _ = commands.COMMANDS[options.command]
    return action(cluster, namespace, options.name, options)
