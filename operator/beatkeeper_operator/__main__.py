"""``python -m beatkeeper_operator``: run the operator as the chart deploys it.

Reads the ``BEATKEEPER_*`` settings and the tenancy policy file, then runs kopf standalone
(one replica) with its liveness endpoint on ``:8080/healthz``. A bad setting or policy file
is one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import sys

import kopf

import beatkeeper_operator.handlers  # noqa: F401 (registers the handlers)
from beatkeeper.settings import SettingsError
from beatkeeper_operator.policy import PolicyError
from beatkeeper_operator.runtime import config_from_env, configure_collector

LIVENESS = "http://0.0.0.0:8080/healthz"


def main() -> None:
    try:
        config = config_from_env()
    except (SettingsError, PolicyError) as exc:
        sys.stderr.write(f"beatkeeper operator: {exc}\n")
        raise SystemExit(2) from None
    namespaces = config.settings.namespaces
    configure_collector()
    kopf.run(
        standalone=True,
        clusterwide=not namespaces,
        namespaces=namespaces,
        liveness_endpoint=LIVENESS,
        memo=kopf.Memo(config=config),
    )


if __name__ == "__main__":
    main()
