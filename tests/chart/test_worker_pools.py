"""Worker pools: several worker Deployments, each with its own queues, scaling and placement."""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import pytest
from chart_render import Object, Rendering, name_of, parse, template

PREFIX = "bk-beatkeeper-"


@pytest.fixture
def pools(renderings: dict[str, Rendering]) -> Rendering:
    return renderings["worker-pools-values"]


def _workers(rendering: Rendering) -> dict[str, Object]:
    return {
        name_of(obj).removeprefix(PREFIX): obj
        for obj in rendering.of_kind("Deployment")
        if name_of(obj).removeprefix(PREFIX).startswith("worker")
    }


def _args(deployment: Object) -> list[str]:
    return list(deployment["spec"]["template"]["spec"]["containers"][0]["args"])


def _option(deployment: Object, option: str) -> str:
    args = _args(deployment)
    return args[args.index(option) + 1]


def _by_name(objects: list[Object]) -> dict[str, Object]:
    return {name_of(obj).removeprefix(PREFIX): obj for obj in objects}


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return selector.items() <= labels.items()


def test_by_default_one_pool_keeps_its_names(renderings: dict[str, Rendering]) -> None:
    rendering = renderings["default"]
    assert list(_workers(rendering)) == ["worker"]
    assert [name_of(obj) for obj in rendering.of_kind("PodDisruptionBudget")] == [
        f"{PREFIX}beat",
        f"{PREFIX}worker",
    ]


def test_each_pool_is_a_deployment_with_its_own_queues(pools: Rendering) -> None:
    workers = _workers(pools)
    assert sorted(workers) == ["worker", "worker-metrics", "worker-publish", "worker-scheduler"]
    assert _option(workers["worker"], "--queues") == "celery"
    assert _option(workers["worker-publish"], "--queues") == "publish"
    assert _option(workers["worker-metrics"], "--queues") == "metrics,metrics-low"
    assert _option(workers["worker-publish"], "--concurrency") == "4"
    assert _option(workers["worker-metrics"], "--concurrency") == "2"  # inherited
    assert workers["worker-scheduler"]["spec"]["replicas"] == 1
    # Scaled pools leave the replica count to their autoscaler.
    assert "replicas" not in workers["worker-publish"]["spec"]
    assert "replicas" not in workers["worker-metrics"]["spec"]


def test_no_selector_matches_another_deployments_pods(pools: Rendering) -> None:
    deployments = pools.of_kind("Deployment")
    for one, other in combinations(deployments, 2):
        labels = other["spec"]["template"]["metadata"]["labels"]
        assert not _selects(one["spec"]["selector"]["matchLabels"], labels), (
            name_of(one),
            name_of(other),
        )
        labels = one["spec"]["template"]["metadata"]["labels"]
        assert not _selects(other["spec"]["selector"]["matchLabels"], labels)


def test_unset_keys_inherit_the_worker_defaults(pools: Rendering) -> None:
    workers = _workers(pools)
    publish = workers["worker-publish"]["spec"]["template"]["spec"]
    default = workers["worker"]["spec"]["template"]["spec"]
    resources = publish["containers"][0]["resources"]
    assert resources["limits"] == {"memory": "2Gi"}
    assert resources["requests"] == default["containers"][0]["resources"]["requests"]
    assert publish["terminationGracePeriodSeconds"] == default["terminationGracePeriodSeconds"]
    metrics = workers["worker-metrics"]["spec"]["template"]["spec"]
    assert metrics["nodeSelector"] == {"workload": "metrics"}
    assert metrics["tolerations"][0]["value"] == "metrics"
    assert "nodeSelector" not in default


def test_keda_and_hpa_scale_only_their_own_pool(pools: Rendering) -> None:
    (scaled,) = pools.of_kind("ScaledObject")
    assert name_of(scaled) == f"{PREFIX}worker-publish"
    assert scaled["spec"]["scaleTargetRef"]["name"] == f"{PREFIX}worker-publish"
    assert scaled["spec"]["maxReplicaCount"] == 20
    assert [t["metadata"]["listName"] for t in scaled["spec"]["triggers"]] == ["publish"]
    (authentication,) = pools.of_kind("TriggerAuthentication")
    assert scaled["spec"]["triggers"][0]["authenticationRef"]["name"] == name_of(authentication)
    (hpa,) = pools.of_kind("HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == f"{PREFIX}worker-metrics"
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 4)


def test_each_pool_that_may_run_several_pods_has_its_own_budget(pools: Rendering) -> None:
    budgets = _by_name(pools.of_kind("PodDisruptionBudget"))
    workers = _workers(pools)
    # worker: 2 replicas; publish: KEDA; metrics: HPA; scheduler: one pod, no budget.
    assert sorted(name for name in budgets if name.startswith("worker")) == [
        "worker",
        "worker-metrics",
        "worker-publish",
    ]
    for name, budget in budgets.items():
        if not name.startswith("worker"):
            continue
        selector = budget["spec"]["selector"]["matchLabels"]
        matching = [
            other
            for other, deployment in workers.items()
            if _selects(selector, deployment["spec"]["template"]["metadata"]["labels"])
        ]
        assert matching == [name]


def test_each_pool_gets_its_network_policy(pools: Rendering) -> None:
    policies = _by_name(pools.of_kind("NetworkPolicy"))
    for name, deployment in _workers(pools).items():
        selector = policies[name]["spec"]["podSelector"]["matchLabels"]
        assert _selects(selector, deployment["spec"]["template"]["metadata"]["labels"])


def test_a_pool_can_switch_off_what_the_defaults_switch_on(helm: Path) -> None:
    result = template(
        helm,
        "--set", "worker.keda.enabled=true",
        "--set", "worker.pools.steady.queues={steady}",
        "--set", "worker.pools.steady.keda.enabled=false",
        "--set", "worker.pools.steady.replicas=3",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    objects = parse(result.stdout)
    scaled = [name_of(obj) for obj in objects if obj["kind"] == "ScaledObject"]
    assert scaled == [f"{PREFIX}worker"]
    (steady,) = [
        obj
        for obj in objects
        if obj["kind"] == "Deployment" and name_of(obj) == f"{PREFIX}worker-steady"
    ]
    assert steady["spec"]["replicas"] == 3


def test_only_pools_run_when_the_default_pool_is_off(helm: Path) -> None:
    result = template(
        helm, "--set", "worker.enabled=false", "--set", "worker.pools.only.queues={a,b}"
    )
    assert result.returncode == 0, result.stderr
    objects = parse(result.stdout)
    workers = [
        name_of(obj) for obj in objects if obj["kind"] == "Deployment" and "-worker" in name_of(obj)
    ]
    assert workers == [f"{PREFIX}worker-only"]


@pytest.mark.parametrize(
    ("setting", "named"),
    [
        ("worker.pools.Publish.queues={a}", "Publish"),
        ("worker.pools.a-very-long-pool-name.queues={a}", "a-very-long-pool-name"),
        ("worker.pools.publish.queus={a}", "queus"),
        ("worker.pools.publish.concurrency=0", "concurrency"),
    ],
)
def test_the_schema_refuses_a_bad_pool(helm: Path, setting: str, named: str) -> None:
    result = template(helm, "--set", setting)
    assert result.returncode != 0
    assert named in result.stderr


def test_a_pool_with_both_autoscalers_is_refused_by_name(helm: Path) -> None:
    result = template(
        helm,
        "--set", "worker.pools.publish.queues={publish}",
        "--set", "worker.pools.publish.autoscaling.enabled=true",
        "--set", "worker.pools.publish.keda.enabled=true",
    )  # fmt: skip
    assert result.returncode != 0
    assert "/worker/pools/publish/keda/enabled" in result.stderr


def test_an_inherited_autoscaler_clashing_with_a_pools_is_refused_by_name(helm: Path) -> None:
    result = template(
        helm,
        "--set", "worker.autoscaling.enabled=true",
        "--set", "worker.pools.publish.queues={publish}",
        "--set", "worker.pools.publish.keda.enabled=true",
    )  # fmt: skip
    assert result.returncode != 0
    assert (
        "worker.pools.publish.autoscaling.enabled and worker.pools.publish.keda.enabled "
        "are mutually exclusive"
    ) in result.stderr
