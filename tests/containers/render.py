"""The chart rendered with the real helm for the images this suite built.

A scenario is the chart's defaults or one of its CI values files; the only values added
are the image references (the suite's locally built images) and, for an upgrade, what the
test changes. Everything else runs exactly as rendered.
"""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path
from typing import Any

import yaml
from engine import REPO_ROOT
from images import Images
from pods import Object

CHART = REPO_ROOT / "charts" / "beatkeeper"
RELEASE = "bk"
NAMESPACE = "beatkeeper"
SCENARIOS: dict[str, Path | None] = {
    "default": None,
    "kind": CHART / "ci" / "values-kind.yaml",
    "no-hooks": CHART / "ci" / "no-hooks-values.yaml",
}


def locate_helm() -> Path:
    """tests/chart/chart_tools.py finds or fetches helm (loaded by path: no packages)."""
    path = REPO_ROOT / "tests" / "chart" / "chart_tools.py"
    spec = importlib.util.spec_from_file_location("beatkeeper_containers_chart_tools", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    helm: Path = module.locate("helm")
    return helm


def scenario_values(scenario: str) -> dict[str, Any]:
    path = SCENARIOS[scenario]
    return {} if path is None else dict(yaml.safe_load(path.read_text()) or {})


def image_settings(scenario: str, images: Images) -> dict[str, str]:
    """Point every image of the rendering at the locally built one of the same role."""
    repository = (scenario_values(scenario).get("image") or {}).get("repository", "beatkeeper")
    beatkeeper = images.examples if repository == "beatkeeper-examples" else images.beatkeeper
    settings = {}
    for prefix, image in (
        ("image", beatkeeper),
        ("postgresql.image", images.postgresql),
        ("redis.image", images.redis),
    ):
        name, tag = image.rsplit(":", 1)
        settings[f"{prefix}.repository"] = name
        settings[f"{prefix}.tag"] = tag
    return settings


def render(helm: Path, scenario: str, images: Images, **extra: str) -> list[Object]:
    """`helm template` of the scenario; ``extra`` are more --set values (an upgrade's)."""
    args = [str(helm), "template", RELEASE, str(CHART), "--namespace", NAMESPACE]
    path = SCENARIOS[scenario]
    if path is not None:
        args += ["--values", str(path)]
    for key, value in {**image_settings(scenario, images), **extra}.items():
        args += ["--set-string", f"{key}={value}"]
    result = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, f"helm template ({scenario}) failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]
