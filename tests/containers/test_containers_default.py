"""The chart's default values, installed as helm installs them and run for real.

Built-in PostgreSQL and Redis (the stand-in images), the migration Job as a post-install
hook, operator, two Beat replicas, two workers and Flower, each pod exactly as rendered;
then `helm test`. The operator reaches the API emulator as a pod reaches its cluster.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cluster import Cluster, NewCluster
from images import Images
from pods import Object, Pod
from render import render

# The first module to run also builds the images (minutes on a cold cache).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]


@dataclass
class Release:
    cluster: Cluster
    objects: list[Object]
    install_error: Exception | None


@pytest.fixture(scope="module")
def release(new_cluster: NewCluster, helm: Path, images: Images) -> Iterator[Release]:
    objects = render(helm, "default", images)
    with new_cluster(api_server=True) as cluster:
        try:
            cluster.install(objects, timeout=120)
        except AssertionError as error:
            yield Release(cluster, objects, error)
        else:
            yield Release(cluster, objects, None)


def installed(release: Release) -> Cluster:
    if release.install_error is not None:
        pytest.fail(f"the release did not install: {release.install_error}", pytrace=False)
    return release.cluster


def pod_of(cluster: Cluster, kind: str, component: str) -> Pod:
    pods = cluster.pods_of(kind, f"bk-beatkeeper-{component}")
    assert pods, f"no pod of {kind} bk-beatkeeper-{component}"
    return pods[0]


def test_the_migration_job_completes(release: Release) -> None:
    assert release.install_error is None, (
        "the migration hook Job failed (its wait-for-postgresql init container needs a user "
        "name: pg_isready run as a uid without a passwd entry makes no attempt): "
        f"{release.install_error}"
    )
    (job_pod,) = [pod for pod in release.cluster.pods.values() if "migrate" in pod.name]
    assert job_pod.succeeded


def test_every_readiness_probe_passes(release: Release) -> None:
    installed(release).wait_ready(timeout=240)


def test_every_liveness_probe_passes(release: Release) -> None:
    assert installed(release).liveness_failures() == []


def test_the_helm_test_pod_passes(release: Release) -> None:
    cluster = installed(release)
    (smoke,) = cluster.helm_test(release.objects, timeout=240)
    assert smoke.succeeded


def test_beatkeeper_containers_run_with_the_rendered_security_context(release: Release) -> None:
    beat = pod_of(installed(release), "Deployment", "beat")
    code, ids = beat.exec("beat", ["sh", "-c", "id -u; id -g; id -G"], timeout=30)
    assert (code, ids.split("\n")[:2]) == (0, ["10001", "10001"])
    assert "10001" in ids.split("\n")[2]  # fsGroup
    code, _output = beat.exec("beat", ["sh", "-c", "touch /app/x"], timeout=30)
    assert code != 0, "the root filesystem is writable"
    assert beat.exec("beat", ["sh", "-c", "touch /tmp/x"], timeout=30)[0] == 0
    code, status = beat.exec("beat", ["cat", "/proc/self/status"], timeout=30)
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    assert int(fields["CapEff"], 16) == 0, "capabilities were not all dropped"
    assert fields["NoNewPrivs"].strip() == "1"


def test_services_resolve_to_their_pods(release: Release) -> None:
    cluster = installed(release)
    worker = pod_of(cluster, "Deployment", "worker")
    postgresql = pod_of(cluster, "StatefulSet", "postgresql")
    code, output = worker.exec(
        "worker",
        ["python", "-c", "import socket; print(socket.gethostbyname('bk-beatkeeper-postgresql'))"],
        timeout=30,
    )
    assert (code, output) == (0, postgresql.ip)
