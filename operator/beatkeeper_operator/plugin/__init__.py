"""``kubectl beatkeeper``: act on beatkeeper Schedules from kubectl.

Installed as the ``kubectl-beatkeeper`` executable, kubectl finds it on ``PATH`` as a
plugin. It talks to the API server with the official Kubernetes client, using the caller's
kubeconfig, ``--context`` and RBAC: each command sets an annotation (or ``spec.suspend``)
that the operator acts on once (``beatkeeper_operator.annotations``), and ``runs`` reads
the runs the operator reports in the status. It never talks to the database.

``cli`` parses the command line, ``commands`` holds what each command does, ``cluster``
wraps the API and its refusals. The Kubernetes client is the ``kubectl`` extra
(``pip install 'beatkeeper[kubectl]'``): the image, which never runs the plugin, leaves it
out, and ``main`` says so in one line where it is missing.
"""

import sys
from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command (``cli.main``); its exit status."""
    try:
        from beatkeeper_operator.plugin import cli  # noqa: PLC0415 (needs the extra)
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] != "kubernetes":
            raise
        sys.stderr.write(
            "kubectl beatkeeper needs the Kubernetes client: pip install 'beatkeeper[kubectl]'\n"
        )
        raise SystemExit(2) from None
    return cli.main(argv)
