"""The GitOps values (no helm hooks, external PostgreSQL and Redis) run for real.

The user's own PostgreSQL and Redis (the stand-in images) and the Secrets naming them exist
before the release, as ci/no-hooks-values.yaml expects. The migration is a plain Job that
operator, Beat and workers wait for; an upgrade that changes what the Job's pod runs must
come as a Job of a new name, since a Job's pod template is immutable.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cluster import Cluster, NewCluster, hook_phases
from images import Images
from pods import Object
from render import render

# The first module to run also builds the images (minutes on a cold cache).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

PASSWORD = "own-database-password"


def own_service(
    name: str, image: str, env: dict[str, str], port: int, probe: Object, args: list[str]
) -> list[Object]:
    """A one-pod StatefulSet and its Service: a database the user runs outside the chart."""
    labels = {"app": name}
    return [
        {
            "kind": "Service",
            "metadata": {"name": name},
            "spec": {"selector": labels, "ports": [{"name": "main", "port": port}]},
        },
        {
            "kind": "StatefulSet",
            "metadata": {"name": name},
            "spec": {
                "replicas": 1,
                "serviceName": name,
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "containers": [
                            {
                                "name": "main",
                                "image": image,
                                "args": args,
                                "env": [{"name": k, "value": v} for k, v in env.items()],
                                "ports": [{"name": "main", "containerPort": port}],
                                "readinessProbe": probe,
                            }
                        ]
                    },
                },
            },
        },
    ]


def own_secret(name: str, key: str, value: str) -> Object:
    return {"kind": "Secret", "metadata": {"name": name}, "stringData": {key: value}}


def prerequisites(images: Images) -> list[Object]:
    postgresql = own_service(
        "own-postgresql",
        images.postgresql,
        {"POSTGRES_USER": "app", "POSTGRES_PASSWORD": PASSWORD, "POSTGRES_DB": "app",
         "PGDATA": "/tmp/pgdata"},
        5432,
        {"exec": {"command": ["pg_isready", "--host", "127.0.0.1", "--username", "app"]}},
        ["postgres"],
    )  # fmt: skip
    # No password and not only on loopback: Redis' protected mode would refuse the pods.
    redis = own_service(
        "own-redis", images.redis, {}, 6379, {"tcpSocket": {"port": 6379}},
        ["redis-server", "--protected-mode", "no"],
    )  # fmt: skip
    return [
        *postgresql,
        *redis,
        own_secret(
            "beatkeeper-database",
            "database-url",
            f"postgresql+psycopg://app:{PASSWORD}@own-postgresql:5432/app",
        ),
        own_secret("beatkeeper-broker", "broker-url", "redis://own-redis:6379/0"),
    ]


def plain_jobs(objects: list[Object]) -> list[str]:
    return [
        obj["metadata"]["name"] for obj in objects if obj["kind"] == "Job" and not hook_phases(obj)
    ]


@pytest.fixture(scope="module")
def release(
    new_cluster: NewCluster, helm: Path, images: Images
) -> Iterator[tuple[Cluster, list[Object]]]:
    objects = render(helm, "no-hooks", images)
    with new_cluster(api_server=True) as cluster:
        cluster.install(prerequisites(images))
        cluster.wait_ready(timeout=120)
        cluster.install(objects)
        yield cluster, objects


def test_the_plain_migration_job_completes_and_every_pod_becomes_ready(
    release: tuple[Cluster, list[Object]],
) -> None:
    cluster, objects = release
    (job,) = plain_jobs(objects)
    cluster.wait_ready(timeout=300)
    (pod,) = cluster.pods_of("Job", job)
    assert pod.succeeded


def test_every_liveness_probe_passes(release: tuple[Cluster, list[Object]]) -> None:
    cluster, _ = release
    assert cluster.liveness_failures() == []


def test_the_helm_test_pod_passes(release: tuple[Cluster, list[Object]]) -> None:
    cluster, objects = release
    (smoke,) = cluster.helm_test(objects, timeout=240)
    assert smoke.succeeded


def test_an_upgrade_with_changed_values_reruns_the_migration_under_a_new_name(
    release: tuple[Cluster, list[Object]], helm: Path, images: Images
) -> None:
    cluster, objects = release
    upgraded = render(helm, "no-hooks", images, **{"config.logLevel": "DEBUG"})
    (before,) = plain_jobs(objects)
    (after,) = plain_jobs(upgraded)
    assert after != before, (
        f"the migration Job keeps its name {before} while its pod template changes "
        "(config.logLevel): the API server refuses the update, a Job's template is immutable"
    )
    cluster.upgrade(upgraded)
    cluster.wait_ready(timeout=300)
    (pod,) = cluster.pods_of("Job", after)
    assert pod.succeeded
