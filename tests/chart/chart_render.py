"""Rendering the chart for tests: scenarios, `helm template`, and the parsed objects.

A scenario is the chart's default values ("default") or one values file in
charts/beatkeeper/ci/ (named by its stem). conftest.py renders and lints every scenario once per
session; tests read the parsed objects through `Rendering`.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from chart_tools import REPO_ROOT

CHART = REPO_ROOT / "charts" / "beatkeeper"
RELEASE = "bk"
NAMESPACE = "beatkeeper"
SCENARIO_FILES: dict[str, Path | None] = {
    "default": None,
    **{path.stem: path for path in sorted((CHART / "ci").glob("*.yaml"))},
}

Object = dict[str, Any]


@dataclass(frozen=True)
class Rendering:
    """The objects one scenario renders to, and `helm lint --strict` on it."""

    scenario: str
    objects: list[Object]
    lint: subprocess.CompletedProcess[str]
    values: dict[str, Any] = field(default_factory=dict)

    def of_kind(self, kind: str) -> list[Object]:
        return [obj for obj in self.objects if obj["kind"] == kind]

    def get(self, kind: str, component: str) -> Object:
        """The one object of `kind` whose name ends in `-<component>`."""
        matches = [obj for obj in self.of_kind(kind) if name_of(obj).endswith(f"-{component}")]
        assert len(matches) == 1, f"{self.scenario}: {kind} *-{component}: {len(matches)} found"
        return matches[0]

    def find(self, kind: str, component: str) -> Object | None:
        matches = [obj for obj in self.of_kind(kind) if name_of(obj).endswith(f"-{component}")]
        return matches[0] if matches else None

    def pod_specs(self) -> Iterator[tuple[Object, Object]]:
        """(owner object, pod spec) of everything that runs containers."""
        for obj in self.objects:
            if obj["kind"] in {"Deployment", "StatefulSet", "Job"}:
                yield obj, obj["spec"]["template"]["spec"]
            elif obj["kind"] == "Pod":
                yield obj, obj["spec"]


def name_of(obj: Object) -> str:
    return str(obj["metadata"]["name"])


def annotations_of(obj: Object) -> dict[str, str]:
    return obj["metadata"].get("annotations") or {}


def env_of(container: Object) -> dict[str, Object]:
    return {item["name"]: item for item in container.get("env", [])}


def run_helm(helm: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(helm), *args], capture_output=True, text=True, timeout=120, check=False
    )


def template(helm: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`helm template` of the chart as release "bk" in namespace "beatkeeper"."""
    return run_helm(helm, "template", RELEASE, str(CHART), "--namespace", NAMESPACE, *args)


def parse(manifest: str) -> list[Object]:
    return [doc for doc in yaml.safe_load_all(manifest) if doc]


def values_args(scenario: str) -> list[str]:
    path = SCENARIO_FILES[scenario]
    return [] if path is None else ["--values", str(path)]


def render_scenario(helm: Path, scenario: str) -> Rendering:
    args = values_args(scenario)
    rendered = template(helm, *args)
    assert rendered.returncode == 0, f"{scenario}: helm template failed:\n{rendered.stderr}"
    lint = run_helm(helm, "lint", "--strict", str(CHART), "--namespace", NAMESPACE, *args)
    path = SCENARIO_FILES[scenario]
    values = {} if path is None else yaml.safe_load(path.read_text())
    return Rendering(scenario, parse(rendered.stdout), lint, values)
