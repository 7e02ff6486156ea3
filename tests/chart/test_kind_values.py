"""The kind values (the dev loop, the e2e suite, docs/install.md) run the example Schedules.

Workers import exactly `config.imports`; a module missing from that list, or a name that
does not exist, leaves runs failing NotRegistered or Beat crash-looping on the import.
"""

from __future__ import annotations

from typing import Any

import yaml
from chart_render import CHART, SCENARIO_FILES, Rendering, name_of
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
    consumed = {queue for queues in _queues_by_pool().values() for queue in queues}
    assert used <= consumed, f"values-kind.yaml worker pools miss {sorted(used - consumed)}"


def _queues_by_pool() -> dict[str, list[str]]:
    worker = _kind_values()["worker"]
    pools = {name: pool.get("queues", worker["queues"]) for name, pool in worker["pools"].items()}
    return {"worker": worker["queues"], **pools}


def test_kind_values_run_the_documents_dedicated_workers_as_pools(
    renderings: dict[str, Rendering],
) -> None:
    """Publishing's publish, metrics and scheduler workers and daily outlook's queue worker
    are Deployments of their own, each consuming only its queue."""
    assert _queues_by_pool() == {
        "worker": ["celery"],
        "publish": ["publish"],
        "metrics": ["metrics"],
        "scheduler": ["scheduler"],
        "outlook": ["daily_outlook_queue"],
    }
    rendered = {
        name_of(obj).removeprefix("bk-beatkeeper-"): _option(obj, "--queues")
        for obj in renderings["values-kind"].of_kind("Deployment")
        if name_of(obj).startswith("bk-beatkeeper-worker")
    }
    assert rendered == {
        "worker": "celery",
        "worker-publish": "publish",
        "worker-metrics": "metrics",
        "worker-scheduler": "scheduler",
        "worker-outlook": "daily_outlook_queue",
    }


def _option(deployment: dict[str, Any], option: str) -> str:
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    return str(args[args.index(option) + 1])


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
