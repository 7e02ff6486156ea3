"""`beatkeeper validate -f PATH...`: check Schedule manifests without touching anything.

Exit 0 when every Schedule is valid, 1 with one line per problem
(`FILE[#DOC]: field.path: message`), 2 for a usage error. Warnings go to stderr and do not
fail the run. With ``BEATKEEPER_POLICY_FILE`` set, a Schedule the tenancy policy forbids is a
problem too, in the words the admission webhook refuses it with.
"""

from __future__ import annotations

from datetime import UTC, datetime

import click

from beatkeeper.cli.output import EXIT_INVALID, UserError, stderr
from beatkeeper.manifests import Checked, check_paths
from beatkeeper.policy import Policy, PolicyError, load_policy
from beatkeeper.problems import Problem
from beatkeeper.settings import Settings, SettingsError

PATHS = click.option(
    "-f",
    "--filename",
    "paths",
    multiple=True,
    required=True,
    type=click.Path(),
    help="A manifest file or a folder of them; repeat for more.",
)


def report(checked: Checked) -> None:
    """Print problems on stdout and warnings on stderr, one line each."""
    for source, problem in checked.warnings:
        stderr.print(f"{source}: warning: {problem}", markup=False)
    for source, problem in checked.problems:
        click.echo(f"{source}: {problem}")


def tenancy_policy() -> Policy:
    """The policy ``BEATKEEPER_POLICY_FILE`` names; a bad setting or file is a ``UserError``."""
    try:
        return load_policy(Settings.from_env().policy_file)
    except (SettingsError, PolicyError) as exc:
        raise UserError(str(exc)) from None


def forbidden(checked: Checked, policy: Policy) -> None:
    """Move the Schedules ``policy`` forbids from ``checked.valid`` to its problems."""
    allowed = []
    for document, validated in checked.valid:
        meta, spec = validated.manifest.metadata, validated.manifest.spec
        refused = policy.refusal(namespace=meta.namespace, task=spec.task, queue=spec.queue)
        if refused is None:
            allowed.append((document, validated))
        else:  # the message already starts with its field path, as the webhook sends it
            checked.problems.append((document.source, Problem("", refused)))
    checked.valid = allowed


@click.command("validate")
@PATHS
def validate(paths: tuple[str, ...]) -> None:
    """Check Schedule manifests (files or folders, multi-document YAML).

    Prints one line per problem as FILE[#DOC]: field.path: message.
    Exit status: 0 all valid, 1 problems found, 2 usage error.

    \b
    Examples:
      beatkeeper validate -f schedule.yaml
      beatkeeper validate -f manifests/examples/ -f team-a/
    """
    checked = check_paths(paths, now=datetime.now(UTC))
    forbidden(checked, tenancy_policy())
    report(checked)
    count = len(checked.valid)
    if checked.problems:
        stderr.print(f"{len(checked.problems)} problem(s); {count} Schedule(s) valid", markup=False)
        raise SystemExit(EXIT_INVALID)
    if count == 0:
        stderr.print(checked.nothing_found(), markup=False)
        raise SystemExit(EXIT_INVALID)
    stderr.print(f"{count} Schedule(s) valid", markup=False)
