"""Every scenario lints clean, renders valid Kubernetes objects, and hardens every container."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest
from chart_render import Object, Rendering, name_of

# The Kubernetes version whose schemas (bundled with kubernetes-validate) objects must meet.
KUBERNETES_VERSION = "1.35.0"
# Kinds from add-ons' CRDs, which kubernetes-validate has no schema for.
ADDON_KINDS = {"ServiceMonitor", "ScaledObject", "TriggerAuthentication", "Certificate", "Issuer"}
BEATKEEPER_UID = 10001


def test_helm_lint_strict_is_clean(rendering: Rendering) -> None:
    assert rendering.lint.returncode == 0, rendering.lint.stdout + rendering.lint.stderr
    assert "[WARNING]" not in rendering.lint.stdout
    assert "[ERROR]" not in rendering.lint.stdout


def test_every_object_meets_the_kubernetes_schema(rendering: Rendering) -> None:
    for obj in rendering.objects:
        if obj["kind"] in ADDON_KINDS:
            continue
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{obj['kind']}/{name_of(obj)}: {error.message} at {list(error.path)}")


def test_every_object_is_in_the_release_namespace_or_cluster_scoped(rendering: Rendering) -> None:
    cluster_scoped = {
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "ValidatingWebhookConfiguration",
    }
    namespaced_elsewhere = {"Role", "RoleBinding"}  # in the namespaces the operator serves
    for obj in rendering.objects:
        namespace = obj["metadata"].get("namespace")
        if obj["kind"] in cluster_scoped:
            assert namespace is None, f"{obj['kind']}/{name_of(obj)}"
        elif obj["kind"] not in namespaced_elsewhere:
            assert namespace == "beatkeeper", f"{obj['kind']}/{name_of(obj)}"


def _containers(pod: Object) -> list[tuple[str, Object]]:
    init = [("init", container) for container in pod.get("initContainers", [])]
    return init + [("main", container) for container in pod["containers"]]


def _effective(pod: Object, container: Object, key: str) -> Any:
    return container.get("securityContext", {}).get(key, pod.get("securityContext", {}).get(key))


def test_every_pod_runs_with_runtime_default_seccomp(rendering: Rendering) -> None:
    for owner, pod in rendering.pod_specs():
        profile = pod["securityContext"].get("seccompProfile", {})
        assert profile.get("type") == "RuntimeDefault", name_of(owner)
        assert "fsGroup" in pod["securityContext"], name_of(owner)


def test_every_container_is_locked_down(rendering: Rendering) -> None:
    for owner, pod in rendering.pod_specs():
        for role, container in _containers(pod):
            where = f"{name_of(owner)}/{container['name']} ({role})"
            context = container.get("securityContext", {})
            assert context.get("allowPrivilegeEscalation") is False, where
            assert context.get("readOnlyRootFilesystem") is True, where
            assert "ALL" in context.get("capabilities", {}).get("drop", []), where
            assert not context.get("privileged", False), where
            assert _effective(pod, container, "runAsNonRoot") is True, where
            assert _effective(pod, container, "runAsUser") not in (None, 0), where


def test_containers_of_our_image_run_as_uid_10001(rendering: Rendering) -> None:
    image = (
        "registry.example.com/platform/beatkeeper"
        if rendering.scenario == "external-db-values"
        else "beatkeeper"
    )
    for owner, pod in rendering.pod_specs():
        for _role, container in _containers(pod):
            if container["image"].split("@")[0].rsplit(":", 1)[0] == image:
                assert _effective(pod, container, "runAsUser") == BEATKEEPER_UID, name_of(owner)


def test_every_container_gets_a_writable_tmp_on_its_read_only_root(rendering: Rendering) -> None:
    for owner, pod in rendering.pod_specs():
        empty_dirs = {volume["name"] for volume in pod.get("volumes", []) if "emptyDir" in volume}
        for _role, container in _containers(pod):
            mounts = {
                mount["mountPath"]: mount["name"] for mount in container.get("volumeMounts", [])
            }
            assert mounts.get("/tmp") in empty_dirs, f"{name_of(owner)}/{container['name']}"


def test_every_container_sets_requests_and_a_memory_limit(rendering: Rendering) -> None:
    for owner, pod in rendering.pod_specs():
        for _role, container in _containers(pod):
            resources = container.get("resources", {})
            where = f"{name_of(owner)}/{container['name']}"
            assert {"cpu", "memory"} <= set(resources.get("requests", {})), where
            assert "memory" in resources.get("limits", {}), where


def test_every_long_running_container_has_liveness_and_readiness_probes(
    rendering: Rendering,
) -> None:
    # Jobs and the test Pod run to completion, and init containers cannot have probes.
    for owner, pod in rendering.pod_specs():
        if owner["kind"] not in {"Deployment", "StatefulSet"}:
            continue
        for container in pod["containers"]:
            where = f"{name_of(owner)}/{container['name']}"
            assert "livenessProbe" in container, where
            assert "readinessProbe" in container, where


def test_probes_use_each_roles_health_endpoints(renderings: dict[str, Rendering]) -> None:
    default = renderings["default"]
    for component in ("beat", "worker"):
        container = default.get("Deployment", component)["spec"]["template"]["spec"]["containers"][
            0
        ]
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
        assert {"name": "metrics", "containerPort": 9808, "protocol": "TCP"} in container["ports"]
    operator = default.get("Deployment", "operator")["spec"]["template"]["spec"]["containers"][0]
    assert operator["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "healthz"}
    assert {"name": "healthz", "containerPort": 8080, "protocol": "TCP"} in operator["ports"]
    assert operator["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    postgres = default.get("StatefulSet", "postgresql")["spec"]["template"]["spec"]["containers"][0]
    assert "pg_isready" in " ".join(postgres["livenessProbe"]["exec"]["command"])
    assert "pg_isready" in " ".join(postgres["readinessProbe"]["exec"]["command"])
    redis = default.get("StatefulSet", "redis")["spec"]["template"]["spec"]["containers"][0]
    assert "redis-cli -h 127.0.0.1 ping" in " ".join(redis["livenessProbe"]["exec"]["command"])
    assert "redis-cli -h 127.0.0.1 ping" in " ".join(redis["readinessProbe"]["exec"]["command"])


def test_only_the_operator_mounts_a_service_account_token(rendering: Rendering) -> None:
    for owner, pod in rendering.pod_specs():
        expected = name_of(owner).endswith("-operator")
        assert pod.get("automountServiceAccountToken") is expected, name_of(owner)
