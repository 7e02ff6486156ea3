"""Session fixtures of the container suite: the engine, the images, helm, and clusters.

The suite runs wherever a container engine works (podman, or docker with a running
engine) and skips, saying why, where none does; under CI (``CI=true``) a missing engine
fails the session instead, so CI can never skip it silently. ``.ci/run`` installs podman.
podman without the CNI plugin that resolves container names fails the session everywhere,
naming the package to install.

``new_cluster`` gives a test module a fresh emulated namespace (``cluster.py``), removed
with every container and network it made when the module ends, whatever happened. At the
end of a session that ran any of it, the suite prints what it cannot emulate.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from apiserver import ApiServer
from cluster import NOT_EMULATED, Cluster, NewCluster, remove_stale
from engine import Engine, find_engine, missing_network_dns
from images import Images, build_all
from render import NAMESPACE, locate_helm

_ran: list[str] = []


@pytest.fixture(scope="session")
def container_engine() -> Engine:
    engine = find_engine()
    if isinstance(engine, str):
        if _in_ci():
            pytest.fail(f"CI must run the container suite, but {engine}", pytrace=False)
        pytest.skip(f"the container suite needs podman or docker: {engine}")
    # A failure, not a skip, anywhere: the engine is there, so the suite runs once it is fixed.
    if (missing := missing_network_dns(engine)) is not None:
        pytest.fail(f"the container suite cannot run: {missing}", pytrace=False)
    remove_stale(engine)
    _ran.append(engine.name)
    return engine


@pytest.fixture(scope="session")
def images(container_engine: Engine) -> Images:
    return build_all(container_engine)


@pytest.fixture(scope="session")
def helm() -> Path:
    try:
        return locate_helm()
    except RuntimeError as error:  # chart_tools.ToolUnavailableError
        if _in_ci():
            pytest.fail(f"CI must run the container suite, but {error}", pytrace=False)
        pytest.skip(f"the container suite needs helm: {error}")


@pytest.fixture(scope="session")
def new_cluster(container_engine: Engine, images: Images) -> NewCluster:
    @contextlib.contextmanager
    def start(*, api_server: bool = False) -> Iterator[Cluster]:
        # Every step of the cleanup runs even when one before it fails.
        with contextlib.ExitStack() as cleanup:
            workdir = Path(tempfile.mkdtemp(prefix="beatkeeper-cluster-"))
            cleanup.callback(shutil.rmtree, workdir, ignore_errors=True)
            workdir.chmod(0o755)
            cluster = Cluster(container_engine, workdir, infra_image=images.base)
            cleanup.callback(cluster.delete)
            gateway = cluster.create_network()
            if api_server:
                api = ApiServer(host=gateway, workdir=workdir, namespace=NAMESPACE).start()
                cleanup.callback(api.stop)
                cluster.api = api
                cluster.service_account_dir = api.service_account_dir
                cluster.api_server = (gateway, 443)
            yield cluster

    return start


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _ran:
        return
    terminalreporter.section("what the container suite cannot emulate")
    for item in NOT_EMULATED:
        terminalreporter.line(f"- {item}")
    terminalreporter.line("tests/e2e (kind) shows these on a real cluster.")
