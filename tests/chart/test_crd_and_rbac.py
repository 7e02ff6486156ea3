"""The CRD in the chart is the generated one; the operator's RBAC is the documented one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from chart_render import CHART, Rendering, annotations_of, env_of, parse, template
from chart_tools import REPO_ROOT

MANIFEST_CRD = REPO_ROOT / "manifests" / "crds" / "schedules.beatkeeper.io.yaml"
CHART_CRD = CHART / "files" / "crds" / "schedules.beatkeeper.io.yaml"
RBAC = REPO_ROOT / "manifests" / "rbac"


def _manifest(path: Path, kind: str) -> dict[str, Any]:
    objects = [obj for obj in yaml.safe_load_all(path.read_text()) if obj]
    matches = [obj for obj in objects if obj["kind"] == kind]
    assert len(matches) == 1, f"{path.name}: {kind}"
    return matches[0]


def test_chart_crd_is_a_byte_copy_of_the_generated_crd() -> None:
    assert CHART_CRD.read_bytes() == MANIFEST_CRD.read_bytes(), (
        f"copy {MANIFEST_CRD.relative_to(REPO_ROOT)} to {CHART_CRD.relative_to(REPO_ROOT)}"
    )


def test_rendered_crd_is_the_generated_one_kept_on_uninstall(
    renderings: dict[str, Rendering],
) -> None:
    (crd,) = renderings["default"].of_kind("CustomResourceDefinition")
    generated = yaml.safe_load(MANIFEST_CRD.read_text())
    assert crd["spec"] == generated["spec"]
    assert crd["metadata"]["name"] == "schedules.beatkeeper.io"
    assert annotations_of(crd)["helm.sh/resource-policy"] == "keep"


def test_crd_can_be_left_out_or_not_kept(helm: Path, renderings: dict[str, Rendering]) -> None:
    assert renderings["namespaced-operator-values"].of_kind("CustomResourceDefinition") == []
    result = template(helm, "--set", "crds.keep=false")
    assert result.returncode == 0, result.stderr
    (crd,) = [obj for obj in parse(result.stdout) if obj["kind"] == "CustomResourceDefinition"]
    assert "helm.sh/resource-policy" not in annotations_of(crd)


def test_cluster_wide_rules_equal_manifests_rbac(renderings: dict[str, Rendering]) -> None:
    rendering = renderings["default"]
    role = rendering.get("ClusterRole", "operator")
    assert role["rules"] == _manifest(RBAC / "cluster-wide.yaml", "ClusterRole")["rules"]
    assert rendering.of_kind("Role") == []
    binding = rendering.get("ClusterRoleBinding", "operator")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "bk-beatkeeper-operator", "namespace": "beatkeeper"}
    ]


def test_namespaced_operator_gets_a_role_per_namespace_and_nothing_cluster_wide(
    renderings: dict[str, Rendering],
) -> None:
    rendering = renderings["namespaced-operator-values"]
    # Cluster-wide, only the right to set the caBundle of the release's own webhook.
    assert [role["rules"] for role in rendering.of_kind("ClusterRole")] == [_WEBHOOK_RULES]
    assert len(rendering.of_kind("ClusterRoleBinding")) == 1
    expected = _manifest(RBAC / "namespaced.yaml", "Role")["rules"]
    roles = rendering.of_kind("Role")
    assert sorted(role["metadata"]["namespace"] for role in roles) == ["team-a", "team-b"]
    for role in roles:
        assert role["rules"] == expected
    bindings = rendering.of_kind("RoleBinding")
    assert sorted(binding["metadata"]["namespace"] for binding in bindings) == ["team-a", "team-b"]
    for binding in bindings:
        assert binding["subjects"][0]["namespace"] == "beatkeeper"
    operator = rendering.get("Deployment", "operator")["spec"]["template"]["spec"]
    env = env_of(operator["containers"][0])
    assert env["BEATKEEPER_NAMESPACES"]["value"] == "team-a,team-b"


# Everything the operator may do, resource by resource (kopf standalone, no peering).
ALLOWED = {
    ("beatkeeper.io", "schedules"): {"get", "list", "watch", "patch"},
    ("beatkeeper.io", "schedules/status"): {"patch"},
    ("", "events"): {"create"},
    ("apiextensions.k8s.io", "customresourcedefinitions"): {"list", "watch"},
    ("admissionregistration.k8s.io", "validatingwebhookconfigurations"): {"get", "patch"},
}
WEBHOOK_CONFIGURATION = "beatkeeper-bk-beatkeeper-webhook"
_WEBHOOK_RULES = [
    {
        "apiGroups": ["admissionregistration.k8s.io"],
        "resources": ["validatingwebhookconfigurations"],
        "resourceNames": [WEBHOOK_CONFIGURATION],
        "verbs": ["get", "patch"],
    }
]


def test_operator_never_gets_more_than_it_needs(rendering: Rendering) -> None:
    for role in rendering.of_kind("ClusterRole") + rendering.of_kind("Role"):
        for rule in role["rules"]:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    allowed = ALLOWED.get((group, resource), set())
                    assert set(rule["verbs"]) <= allowed, (group, resource, rule["verbs"])
                    if resource == "validatingwebhookconfigurations":
                        assert rule["resourceNames"] == [WEBHOOK_CONFIGURATION]


def test_the_operator_may_patch_its_webhook_configuration_only_without_cert_manager(
    helm: Path, renderings: dict[str, Rendering]
) -> None:
    role = renderings["default"].get("ClusterRole", "operator-webhook")
    assert role["rules"] == _WEBHOOK_RULES
    binding = renderings["default"].get("ClusterRoleBinding", "operator-webhook")
    assert binding["subjects"][0]["name"] == "bk-beatkeeper-operator"
    result = template(helm, "--set", "webhook.certManager.enabled=true")
    assert result.returncode == 0, result.stderr
    kinds = [(obj["kind"], obj["metadata"]["name"]) for obj in parse(result.stdout)]
    assert ("ClusterRole", "beatkeeper-bk-beatkeeper-operator-webhook") not in kinds
