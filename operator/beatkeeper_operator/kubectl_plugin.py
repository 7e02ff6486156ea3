"""``kubectl beatkeeper``: trigger, backfill, suspend and resume Schedules from kubectl.

Installed as the ``kubectl-beatkeeper`` executable, kubectl finds it on ``PATH`` as a
plugin. Each command is one ``kubectl annotate`` or ``kubectl patch`` of the Schedule, run
as a subprocess, so it uses the caller's kubeconfig, context and RBAC and needs no client
library; the operator does the rest (``docs/operator.md``)::

    kubectl beatkeeper trigger nightly -n team-a
    kubectl beatkeeper backfill nightly -n team-a \
        --from 2026-01-01T00:00:00Z --to 2026-01-02T00:00:00Z
    kubectl beatkeeper suspend nightly -n team-a
    kubectl beatkeeper resume nightly -n team-a

It imports nothing of beatkeeper beyond this module: it must start fast and run where only
kubectl is installed. It must not talk to the database.
"""

from __future__ import annotations

import argparse
import json
import secrets
import shutil
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, datetime

__all__ = ["BACKFILL_ANNOTATION", "TRIGGER_ANNOTATION", "kubectl_args", "main"]

# The same names as beatkeeper_operator.reconcile (a test pins them equal); not imported
# from there, which would load SQLAlchemy and the store for a one-line kubectl call.
TRIGGER_ANNOTATION = "beatkeeper.io/trigger"
BACKFILL_ANNOTATION = "beatkeeper.io/backfill"
RESOURCE = "schedules.beatkeeper.io"


class UsageError(ValueError):
    """The command line asks for something that cannot be done; the message says why."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubectl beatkeeper",
        description="Trigger, backfill, suspend or resume a beatkeeper Schedule.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    helps = {
        "trigger": "plan one run now (a new token each time)",
        "backfill": "plan the occurrences in [--from, --to] that were never planned",
        "suspend": "stop planning new runs (spec.suspend: true)",
        "resume": "plan runs again (spec.suspend: false)",
    }
    for name, text in helps.items():
        command = commands.add_parser(name, help=text, description=text)
        command.add_argument("name", metavar="NAME", help="the Schedule's name")
        command.add_argument("-n", "--namespace", help="its namespace (default: the context's)")
        if name == "backfill":
            command.add_argument("--from", dest="start", required=True, help="RFC 3339 time")
            command.add_argument("--to", dest="end", required=True, help="RFC 3339 time")
    return parser


def kubectl_args(options: argparse.Namespace, *, token: str | None = None) -> list[str]:
    """The kubectl arguments (without ``kubectl``) that carry out one command."""
    if options.command == "trigger":
        token = token or f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"
        action = ["annotate", RESOURCE, options.name, f"{TRIGGER_ANNOTATION}={token}"]
        action.append("--overwrite")
    elif options.command == "backfill":
        window = f"{_instant(options.start, '--from')}/{_instant(options.end, '--to')}"
        action = ["annotate", RESOURCE, options.name, f"{BACKFILL_ANNOTATION}={window}"]
        action.append("--overwrite")
    else:
        body = json.dumps({"spec": {"suspend": options.command == "suspend"}})
        action = ["patch", RESOURCE, options.name, "--type", "merge", "-p", body]
    if options.namespace:
        action += ["--namespace", options.namespace]
    return action


def _instant(text: str, flag: str) -> str:
    """``text`` as the operator will read it: an RFC 3339 time with an offset."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise UsageError(f"{flag} must be an RFC 3339 time with an offset, got {text!r}")
    return moment.isoformat()


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; kubectl's exit status, or 2 for a usage error, 127 without kubectl."""
    options = _parser().parse_args(argv)
    try:
        arguments = kubectl_args(options)
    except UsageError as exc:
        sys.stderr.write(f"kubectl beatkeeper: {exc}\n")
        return 2
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        sys.stderr.write(
            "kubectl beatkeeper: kubectl was not found on PATH; install it "
            "(https://kubernetes.io/docs/tasks/tools/) or add it to PATH\n"
        )
        return 127
    return subprocess.run([kubectl, *arguments], check=False).returncode  # noqa: S603


if __name__ == "__main__":
    raise SystemExit(main())
