"""``kubectl beatkeeper``: act on beatkeeper Schedules from kubectl.

Installed as the ``kubectl-beatkeeper`` executable, kubectl finds it on ``PATH`` as a
plugin. It talks to the API server with the official Kubernetes client, using the caller's
kubeconfig, ``--context`` and RBAC: each command sets an annotation (or ``spec.suspend``)
that the operator acts on once (``beatkeeper_operator.annotations``), and ``runs`` reads
the runs the operator reports in the status. It never talks to the database.

``cli`` parses the command line, ``commands`` holds what each command does, ``cluster``
wraps the API and its refusals.
"""

from beatkeeper_operator.plugin.cli import main

__all__ = ["main"]
