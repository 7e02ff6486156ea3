"""The kind values (the dev loop, the e2e suite, docs/install.md) run the example Schedules.

Workers import exactly `config.imports`; a module missing from that list, or a name that
does not exist, leaves runs failing NotRegistered or Beat crash-looping on the import.
"""

from __future__ import annotations

from typing import Any

import yaml
from chart_render import CHART, SCENARIO_FILES
from chart_tools import REPO_ROOT
from task_modules import registered_by

from beatkeeper.manifests import manifest_files, read_documents

KIND_VALUES = SCENARIO_FILES["values-kind"]
EXAMPLES = REPO_ROOT / "manifests" / "examples"


def _kind_values() -> dict[str, Any]:
    assert KIND_VALUES is not None
    values: dict[str, Any] = yaml.safe_load(KIND_VALUES.read_text())
    return values


def _example_tasks() -> set[str]:
    documents = [doc for path in manifest_files([EXAMPLES]) for doc in read_documents(path)]
    return {doc.content["spec"]["task"] for doc in documents}


def test_kind_values_import_every_task_the_example_schedules_name() -> None:
    registered = registered_by(_kind_values()["config"]["imports"])
    missing = _example_tasks() - registered
    assert not missing, f"values-kind.yaml config.imports registers none of {sorted(missing)}"


def test_kind_values_worker_consumes_every_queue_the_examples_use() -> None:
    documents = [doc for path in manifest_files([EXAMPLES]) for doc in read_documents(path)]
    specs = [doc.content["spec"] for doc in documents]
    used = {spec.get("queue", "celery") for spec in specs}
    used |= {
        spec["kwargs"]["publish_queue"]
        for spec in specs
        if "publish_queue" in spec.get("kwargs", {})
    }
    consumed = set(_kind_values()["worker"]["queues"])
    assert used <= consumed, f"values-kind.yaml worker.queues misses {sorted(used - consumed)}"


def test_kind_values_use_the_examples_image() -> None:
    image = _kind_values()["image"]
    assert (image["repository"], image["tag"]) == ("beatkeeper-examples", "dev")
    skaffold = yaml.safe_load((REPO_ROOT / "skaffold.yaml").read_text())
    (artifact,) = skaffold["build"]["artifacts"]
    assert artifact["image"] == "beatkeeper-examples"
    assert artifact["docker"] == {"dockerfile": "Dockerfile", "target": "examples"}
    (release,) = skaffold["deploy"]["helm"]["releases"]
    assert release["chartPath"] == str(CHART.relative_to(REPO_ROOT))
    assert release["setValueTemplates"]["image.repository"] == (
        "{{.IMAGE_REPO_beatkeeper_examples}}"
    )
