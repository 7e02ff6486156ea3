"""docs/install.md documents every value the chart reads."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import yaml
from chart_render import CHART
from chart_tools import REPO_ROOT

DOC = (REPO_ROOT / "docs" / "install.md").read_text()
COMPONENTS = {"operator", "beat", "worker", "flower", "migrations"}
# Keys every pod-running component takes, documented once as `<component>.<key>`.
COMPONENT_KEYS = {
    "resources", "livenessProbe", "readinessProbe", "podAnnotations", "podLabels",
    "nodeSelector", "tolerations", "affinity", "topologySpreadConstraints",
    "priorityClassName", "podSecurityContext", "securityContext", "extraEnv", "extraArgs",
    "extraVolumes", "extraVolumeMounts", "initContainers", "sidecars",
}  # fmt: skip
# Values documented as a whole, not key by key (Kubernetes objects, the policy).
WHOLE = {
    "operator.policy", "podSecurityContext", "securityContext", "postgresql.resources",
    "postgresql.podSecurityContext", "postgresql.securityContext", "redis.resources",
    "redis.podSecurityContext", "redis.securityContext", "tests.resources",
}  # fmt: skip


def _leaves(values: dict[str, Any], prefix: str = "") -> Iterator[str]:
    for key, value in values.items():
        path = f"{prefix}{key}"
        if path in WHOLE or key in COMPONENT_KEYS or not isinstance(value, dict) or not value:
            yield path
        elif set(value) <= {"namespaceSelector", "podSelector"}:
            yield from (f"{path}.{selector}" for selector in value)
        else:
            yield from _leaves(value, f"{path}.")


def test_values_reference_names_every_key() -> None:
    documented = set(re.findall(r"`([A-Za-z_<>.]+)`", DOC))
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    missing = []
    for path in _leaves(values):
        component, _, rest = path.partition(".")
        shared = component in COMPONENTS and rest in COMPONENT_KEYS
        name = f"<component>.{rest}" if shared else path
        if name not in documented:
            missing.append(name)
    assert not missing, f"add to the values reference in docs/install.md: {missing}"


def test_node_selector_values_are_passed_as_strings() -> None:
    # helm's --set makes `true` a boolean; the API server refuses a non-string nodeSelector.
    e2e = (REPO_ROOT / "tests" / "e2e" / "test_kind.py").read_text()
    for where, text in (("docs/install.md", DOC), ("tests/e2e/test_kind.py", e2e)):
        assert not re.search(r"--set\W+controller\.nodeSelector", text), where
        assert re.search(r"--set-string\W+controller\.nodeSelector\.ingress-ready=true", text)
