"""The whole chart on a real cluster: kind, the image built here, the user's install path.

`make e2e` runs this module. It creates a throwaway kind cluster, builds and loads the
image, installs ingress-nginx and the chart (charts/beatkeeper/ci/values-kind.yaml), applies
manifests/examples/, waits for every Schedule to record a succeeded run, reaches Flower
through the ingress, deletes a Schedule through its finalizer, upgrades, uninstalls and
deletes the cluster. Tests run in file order and build on each other.

Needs: a running Docker engine, `kind` on PATH, and network access to pull the PostgreSQL,
Redis and ingress-nginx images and chart. Skipped, saying which is missing, otherwise.
Set BEATKEEPER_E2E_KEEP_CLUSTER=1 to keep the cluster for debugging.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART = REPO_ROOT / "charts" / "beatkeeper"
EXAMPLES = sorted((REPO_ROOT / "manifests" / "examples").glob("*.yaml"))
RELEASE = NAMESPACE = "beatkeeper"
# The Dockerfile's `examples` target: beatkeeper plus the tasks manifests/examples/ name.
IMAGE = "beatkeeper-examples:e2e"
FINALIZER = "beatkeeper.io/finalizer"
TRIGGERS = ("cron", "interval", "rrule", "at")
# Fields that could keep a rewritten example from running right now.
BOUNDS = ("startTime", "endTime", "exclude", "maxRuns", "jitter", "suspend", "startingDeadline")
INGRESS_NGINX_CHART = os.environ.get(
    "BEATKEEPER_E2E_INGRESS_NGINX_REPO", "https://kubernetes.github.io/ingress-nginx"
)


def _unusable_reason() -> str | None:
    missing = []
    if shutil.which("kind") is None:
        missing.append("kind is not on PATH")
    if shutil.which("docker") is None:
        missing.append("docker is not on PATH")
    elif subprocess.run(["docker", "info"], capture_output=True, check=False).returncode != 0:
        missing.append(
            "`docker info` failed: no Docker engine is running (the CLI alone is not enough)"
        )
    return "; ".join(missing) or None


_REASON = _unusable_reason()
if _REASON is not None:
    pytest.skip(f"kind e2e suite skipped: {_REASON}", allow_module_level=True)


def _chart_tools() -> Any:
    """tests/chart/chart_tools.py, loaded by path: the two suites are not packages."""
    path = REPO_ROOT / "tests" / "chart" / "chart_tools.py"
    spec = importlib.util.spec_from_file_location("beatkeeper_e2e_chart_tools", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class Cluster:
    name: str
    kubeconfig: Path
    http_port: int
    helm: Path
    kubectl: Path

    def run(self, *args: str, timeout: float = 600, check: bool = True) -> str:
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig)}
        result = subprocess.run(
            list(args), capture_output=True, text=True, timeout=timeout, env=env, check=False
        )
        if check and result.returncode != 0:
            pytest.fail(f"`{' '.join(args)}` failed ({result.returncode}):\n{result.stderr}")
        return result.stdout

    def kubectl_json(self, *args: str) -> Any:
        return json.loads(self.run(str(self.kubectl), *args, "-o", "json"))

    def kube(self, *args: str, timeout: float = 600) -> str:
        return self.run(str(self.kubectl), *args, timeout=timeout)

    def helm_run(self, *args: str, timeout: float = 900) -> str:
        return self.run(str(self.helm), *args, timeout=timeout)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _kind_config(http_port: int) -> str:
    return yaml.safe_dump(
        {
            "kind": "Cluster",
            "apiVersion": "kind.x-k8s.io/v1alpha4",
            "nodes": [
                {
                    "role": "control-plane",
                    "kubeadmConfigPatches": [
                        "kind: InitConfiguration\nnodeRegistration:\n  kubeletExtraArgs:\n"
                        '    node-labels: "ingress-ready=true"\n'
                    ],
                    "extraPortMappings": [
                        {
                            "containerPort": 80,
                            "hostPort": http_port,
                            "listenAddress": "127.0.0.1",
                            "protocol": "TCP",
                        }
                    ],
                }
            ],
        }
    )


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tools = _chart_tools()
    workdir = tmp_path_factory.mktemp("kind")
    name = f"beatkeeper-e2e-{uuid.uuid4().hex[:6]}"
    port = _free_port()
    config = workdir / "kind.yaml"
    config.write_text(_kind_config(port))
    created = Cluster(
        name, workdir / "kubeconfig", port, tools.locate("helm"), tools.locate("kubectl")
    )
    created.run(
        "kind", "create", "cluster", "--name", name, "--config", str(config),
        "--kubeconfig", str(created.kubeconfig), "--wait", "180s",
    )  # fmt: skip
    try:
        yield created
    finally:
        if not os.environ.get("BEATKEEPER_E2E_KEEP_CLUSTER"):
            created.run("kind", "delete", "cluster", "--name", name, check=False)


@pytest.fixture(scope="module")
def image(cluster: Cluster) -> str:
    cluster.run(
        "docker", "build", "--target", "examples", "--tag", IMAGE, str(REPO_ROOT), timeout=1800
    )
    cluster.run("kind", "load", "docker-image", IMAGE, "--name", cluster.name)
    return IMAGE


@pytest.fixture(scope="module")
def ingress_controller(cluster: Cluster) -> None:
    """ingress-nginx bound to the node's port 80, which kind maps to 127.0.0.1:<port>."""
    cluster.helm_run(
        "upgrade", "--install", "ingress-nginx", "ingress-nginx",
        "--repo", INGRESS_NGINX_CHART,
        "--namespace", "ingress-nginx", "--create-namespace",
        "--set", "controller.hostPort.enabled=true",
        "--set", "controller.service.type=NodePort",
        # A nodeSelector value must be a string: --set would make it a boolean.
        "--set-string", "controller.nodeSelector.ingress-ready=true",
        "--set", "controller.admissionWebhooks.enabled=false",
        "--set", "controller.ingressClassResource.name=nginx",
        "--wait", "--timeout", "5m",
    )  # fmt: skip


@pytest.fixture(scope="module")
def release(cluster: Cluster, image: str, ingress_controller: None) -> str:
    """The user's install path: `helm install` with the kind values, no --wait."""
    repository, tag = image.split(":")
    cluster.helm_run(
        "install", RELEASE, str(CHART),
        "--namespace", NAMESPACE, "--create-namespace",
        "--values", str(CHART / "ci" / "values-kind.yaml"),
        "--set", f"image.repository={repository}", "--set", f"image.tag={tag}",
        "--timeout", "10m",
    )  # fmt: skip
    return RELEASE


def _schedule_names(cluster: Cluster) -> list[tuple[str, str]]:
    listed = cluster.kubectl_json("get", "schedules.beatkeeper.io", "--all-namespaces")
    return [(item["metadata"]["namespace"], item["metadata"]["name"]) for item in listed["items"]]


def _example_schedules() -> list[dict[str, Any]]:
    return [doc for path in EXAMPLES for doc in yaml.safe_load_all(path.read_text()) if doc]


def test_every_component_becomes_ready(cluster: Cluster, release: str) -> None:
    for workload in ("statefulset/beatkeeper-postgresql", "statefulset/beatkeeper-redis"):
        cluster.kube("rollout", "status", workload, "-n", NAMESPACE, "--timeout", "5m")
    workers = (
        "worker",
        *(f"worker-{pool}" for pool in ("publish", "metrics", "scheduler", "outlook")),
    )
    for component in ("operator", "beat", *workers, "flower"):
        cluster.kube(
            "rollout", "status", f"deployment/beatkeeper-{component}",
            "-n", NAMESPACE, "--timeout", "5m",
        )  # fmt: skip


def test_helm_test_runs_a_noop_schedule_end_to_end(cluster: Cluster, release: str) -> None:
    cluster.helm_run("test", release, "--namespace", NAMESPACE, "--timeout", "5m", "--logs")


def test_example_schedules_are_accepted(cluster: Cluster, release: str) -> None:
    assert EXAMPLES, "manifests/examples/ is empty"
    for path in EXAMPLES:
        cluster.kube("apply", "-f", str(path))
    for doc in _example_schedules():
        meta = doc["metadata"]
        cluster.kube(
            "wait", "--for=condition=Ready", f"schedule.beatkeeper.io/{meta['name']}",
            "-n", meta.get("namespace", "default"), "--timeout", "120s",
        )  # fmt: skip


def test_every_example_schedule_records_a_succeeded_run(cluster: Cluster, release: str) -> None:
    # The examples run nightly or monthly: re-time each to every 10 seconds (an edit plans
    # from now on) and wait for its first run to succeed.
    for doc in _example_schedules():
        meta = doc["metadata"]
        namespace = meta.get("namespace", "default")
        patch: dict[str, Any] = dict.fromkeys((*TRIGGERS, *BOUNDS))
        patch["interval"] = "10s"
        cluster.kube(
            "patch", f"schedule.beatkeeper.io/{meta['name']}", "-n", namespace,
            "--type", "merge", "--patch", json.dumps({"spec": patch}),
        )  # fmt: skip
    for doc in _example_schedules():
        meta = doc["metadata"]
        cluster.kube(
            "wait", "--for=jsonpath={.status.lastRun.state}=succeeded",
            f"schedule.beatkeeper.io/{meta['name']}",
            "-n", meta.get("namespace", "default"), "--timeout", "300s",
        )  # fmt: skip


def _get(url: str, credentials: tuple[str, str] | None) -> int:
    request = urllib.request.Request(url)
    if credentials is not None:
        token = base64.b64encode(":".join(credentials).encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def _flower_credentials(cluster: Cluster) -> tuple[str, str]:
    secret = cluster.kubectl_json("get", "secret", "beatkeeper-flower", "-n", NAMESPACE)
    data = {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}
    return data["username"], data["password"]


def test_flower_answers_through_the_ingress_only_with_credentials(
    cluster: Cluster, release: str
) -> None:
    url = f"http://127.0.0.1:{cluster.http_port}/flower/"
    credentials = _flower_credentials(cluster)
    assert _get(url, credentials) == 200
    assert _get(url, None) == 401
    assert _get(url, (credentials[0], "wrong")) == 401
    # The probes' endpoint needs no credentials.
    assert _get(f"http://127.0.0.1:{cluster.http_port}/flower/healthcheck", None) == 200


def test_deleting_a_schedule_runs_its_finalizer(cluster: Cluster, release: str) -> None:
    namespace, name = _schedule_names(cluster)[0]
    schedule = cluster.kubectl_json("get", f"schedule.beatkeeper.io/{name}", "-n", namespace)
    assert FINALIZER in schedule["metadata"].get("finalizers", [])
    cluster.kube(
        "delete", f"schedule.beatkeeper.io/{name}", "-n", namespace,
        "--wait=true", "--timeout", "120s",
    )  # fmt: skip
    assert (namespace, name) not in _schedule_names(cluster)


def _generated_secrets(cluster: Cluster) -> dict[str, dict[str, str]]:
    return {
        name: cluster.kubectl_json("get", "secret", name, "-n", NAMESPACE)["data"]
        for name in ("beatkeeper-flower", "beatkeeper-postgresql", "beatkeeper-redis")
    }


def test_upgrade_keeps_generated_passwords(cluster: Cluster, release: str) -> None:
    before = _generated_secrets(cluster)
    cluster.helm_run(
        "upgrade", release, str(CHART), "--namespace", NAMESPACE, "--reuse-values",
        "--set", "flower.maxTasks=5000", "--timeout", "10m",
    )  # fmt: skip
    assert _generated_secrets(cluster) == before
    cluster.kube("rollout", "status", "deployment/beatkeeper-flower", "-n", NAMESPACE)
    assert (
        _get(f"http://127.0.0.1:{cluster.http_port}/flower/", _flower_credentials(cluster)) == 200
    )


def test_uninstall_removes_the_release_and_keeps_the_crd(cluster: Cluster, release: str) -> None:
    # Schedules go first, while the operator is there to run their finalizers.
    for namespace, name in _schedule_names(cluster):
        cluster.kube(
            "delete", f"schedule.beatkeeper.io/{name}", "-n", namespace, "--timeout", "120s"
        )
    # Foreground cascade: helm's --wait then lasts until the pods themselves are gone, not
    # only their Deployments and StatefulSets (the default background cascade leaves them
    # terminating).
    cluster.helm_run(
        "uninstall", release, "--namespace", NAMESPACE,
        "--wait", "--cascade", "foreground", "--timeout", "5m",
    )  # fmt: skip
    pods = cluster.kubectl_json(
        "get", "pods", "-n", NAMESPACE, "-l", f"app.kubernetes.io/instance={release}"
    )
    assert pods["items"] == []
    crd = cluster.kubectl_json("get", "crd", "schedules.beatkeeper.io")
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
