"""``beatkeeper-operator`` / ``python -m beatkeeper_operator``: run the operator as deployed.

Reads the command line (``options``), the ``BEATKEEPER_*`` settings and the tenancy policy
file, sets up logging, then runs kopf standalone (one replica) with its liveness endpoint.
``--help`` starts nothing. A bad argument, setting or policy file is one line on stderr
and exit status 2, before anything connects: never a traceback, never a retry loop.
"""

from __future__ import annotations

import dataclasses
import logging
import sys

import kopf

import beatkeeper_operator.handlers  # noqa: F401 (registers the handlers)
from beatkeeper import logging as beatkeeper_logging
from beatkeeper.policy import PolicyError
from beatkeeper.settings import SettingsError
from beatkeeper.store import check_database_url
from beatkeeper_operator import options as command_line
from beatkeeper_operator.runtime import OperatorConfig, config_from_env, configure_collector


def main(argv: list[str] | None = None) -> None:
    options = command_line.parse(sys.argv[1:] if argv is None else argv)
    try:
        config = _config(options)
    except (SettingsError, PolicyError) as exc:
        sys.stderr.write(f"{command_line.PROG}: {exc}\n")
        raise SystemExit(2) from None
    _configure_logging(config)
    namespaces = config.settings.namespaces
    configure_collector()
    kopf.run(
        standalone=True,
        clusterwide=not namespaces,
        namespaces=namespaces,
        liveness_endpoint=options.liveness,
        memo=kopf.Memo(config=config),
    )


def _config(options: command_line.Options) -> OperatorConfig:
    """The environment's configuration with the command line's overrides, fully checked."""
    config = config_from_env()
    settings = command_line.apply(options, config.settings)
    check_database_url(settings.require_database_url())
    return dataclasses.replace(config, settings=settings)


def _configure_logging(config: OperatorConfig) -> None:
    beatkeeper_logging.configure(config.settings)
    # kopf logs every handler outcome at INFO, one line per Schedule per change; its
    # warnings and errors (and everything with --verbose) still come through.
    if logging.getLogger().level > logging.DEBUG:
        logging.getLogger("kopf").setLevel(logging.WARNING)


if __name__ == "__main__":
    main()
