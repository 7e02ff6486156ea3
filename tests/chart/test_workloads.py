"""Operator, beat, worker and the built-in servers run the commands the image provides."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from chart_render import Object, Rendering, annotations_of, env_of, name_of, parse, template

PYTHON_ROLES = ("operator", "beat", "worker")
SETTINGS = (
    "BEATKEEPER_DATABASE_URL",
    "BEATKEEPER_DB_SCHEMA",
    "BEATKEEPER_LOG_FORMAT",
    "BEATKEEPER_LOG_LEVEL",
    "BEATKEEPER_METRICS_PORT",
)


def _pod(rendering: Rendering, kind: str, component: str) -> Object:
    return rendering.get(kind, component)["spec"]["template"]["spec"]


def test_operator_is_one_pod_replaced_not_rolled(renderings: dict[str, Rendering]) -> None:
    deployment = renderings["default"].get("Deployment", "operator")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "bk-beatkeeper-operator"
    container = pod["containers"][0]
    assert container["args"] == ["beatkeeper", "operator"]
    env = env_of(container)
    assert env["BEATKEEPER_NAMESPACES"]["value"] == ""
    assert env["BEATKEEPER_POLICY_FILE"]["value"] == "/etc/beatkeeper/policy.yaml"
    assert "BEATKEEPER_BROKER_URL" not in env


def test_operator_mounts_the_tenancy_policy(renderings: dict[str, Rendering]) -> None:
    rendering = renderings["namespaced-operator-values"]
    config_map = rendering.get("ConfigMap", "policy")
    policy = yaml.safe_load(config_map["data"]["policy.yaml"])
    assert policy == rendering.values["operator"]["policy"]
    deployment = rendering.get("Deployment", "operator")
    pod = deployment["spec"]["template"]["spec"]
    mounts = {m["name"]: m for m in pod["containers"][0]["volumeMounts"]}
    assert mounts["policy"]["mountPath"] == "/etc/beatkeeper"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["policy"]["configMap"]["name"] == name_of(config_map)
    # A policy change restarts the operator.
    assert "checksum/policy" in annotations_of(deployment["spec"]["template"])


def test_beat_and_every_worker_pool_mount_the_same_tenancy_policy(
    renderings: dict[str, Rendering],
) -> None:
    rendering = renderings["worker-pools-values"]
    config_map = rendering.get("ConfigMap", "policy")
    checksum = annotations_of(rendering.get("Deployment", "operator")["spec"]["template"])
    deployments = [d for d in rendering.of_kind("Deployment") if _runs_celery(d)]
    names = {name_of(d) for d in deployments}
    assert "bk-beatkeeper-beat" in names
    assert len([n for n in names if n.startswith("bk-beatkeeper-worker")]) >= 2
    for deployment in deployments:
        pod = deployment["spec"]["template"]["spec"]
        container = pod["containers"][0]
        assert env_of(container)["BEATKEEPER_POLICY_FILE"]["value"] == "/etc/beatkeeper/policy.yaml"
        mounts = {m["name"]: m for m in container["volumeMounts"]}
        assert mounts["policy"] == {
            "name": "policy", "mountPath": "/etc/beatkeeper", "readOnly": True
        }  # fmt: skip
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["policy"]["configMap"]["name"] == name_of(config_map)
        # A policy change restarts Beat and the workers with the operator.
        annotations = annotations_of(deployment["spec"]["template"])
        assert annotations["checksum/policy"] == checksum["checksum/policy"]


def _runs_celery(deployment: Object) -> bool:
    """Beat or a worker pool (Flower runs `celery` too, but starts no run)."""
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    return bool(args[:3] == ["celery", "-A", "beatkeeper_worker"] and args[3] in {"beat", "worker"})


def test_beat_runs_the_database_scheduler_active_active(renderings: dict[str, Rendering]) -> None:
    rendering = renderings["default"]
    deployment = rendering.get("Deployment", "beat")
    assert deployment["spec"]["replicas"] == 2
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args == [
        "celery", "-A", "beatkeeper_worker", "beat",
        "-S", "beatkeeper_worker.beat:DatabaseScheduler", "--loglevel", "INFO",
    ]  # fmt: skip
    assert rendering.get("PodDisruptionBudget", "beat")["spec"]["minAvailable"] == 1


def test_worker_takes_one_message_at_a_time_and_finishes_tasks_on_shutdown(
    renderings: dict[str, Rendering],
) -> None:
    rendering = renderings["external-db-values"]
    pod = _pod(rendering, "Deployment", "worker")
    assert pod["containers"][0]["args"] == [
        "celery", "-A", "beatkeeper_worker", "worker", "--loglevel", "INFO",
        "--queues", "celery,billing", "--concurrency", "4", "--prefetch-multiplier", "1",
    ]  # fmt: skip
    assert pod["terminationGracePeriodSeconds"] == 7200
    assert (
        _pod(renderings["default"], "Deployment", "worker")["terminationGracePeriodSeconds"] == 3600
    )


def test_worker_budget_exists_only_with_more_than_one_pod(helm: Path) -> None:
    def budgets(*args: str) -> list[Object]:
        result = template(helm, *args)
        assert result.returncode == 0, result.stderr
        return [
            obj
            for obj in parse(result.stdout)
            if obj["kind"] == "PodDisruptionBudget" and name_of(obj).endswith("-worker")
        ]

    assert budgets("--set", "worker.replicas=1") == []
    assert len(budgets("--set", "worker.replicas=3")) == 1
    assert (
        len(budgets("--set", "worker.replicas=1", "--set", "worker.autoscaling.enabled=true")) == 1
    )


WORKER_SCALING = {
    "plain replicas": ["worker.replicas=3"],
    "HPA at a minimum of 1": [
        "worker.autoscaling.enabled=true",
        "worker.autoscaling.minReplicas=1",
    ],
    "KEDA at a minimum of 1": ["worker.keda.enabled=true", "worker.keda.minReplicaCount=1"],
    "KEDA from zero": ["worker.keda.enabled=true", "worker.keda.minReplicaCount=0"],
}


@pytest.mark.parametrize("scaling", sorted(WORKER_SCALING))
def test_worker_budget_never_blocks_a_node_drain(helm: Path, scaling: str) -> None:
    # With one worker running, minAvailable 1 would refuse every eviction forever;
    # maxUnavailable >= 1 always lets a drain evict one worker.
    args = [arg for setting in WORKER_SCALING[scaling] for arg in ("--set", setting)]
    result = template(helm, *args)
    assert result.returncode == 0, result.stderr
    (budget,) = [
        obj
        for obj in parse(result.stdout)
        if obj["kind"] == "PodDisruptionBudget" and name_of(obj).endswith("-worker")
    ]
    assert budget["spec"]["maxUnavailable"] == 1, scaling
    assert "minAvailable" not in budget["spec"], scaling


def test_worker_budget_refuses_a_blocking_setting(helm: Path) -> None:
    result = template(helm, "--set", "worker.pdb.maxUnavailable=0")
    assert result.returncode != 0
    assert "/worker/pdb/maxUnavailable" in result.stderr
    assert template(helm, "--set", "worker.pdb.maxUnavailable=25%").returncode == 0


def test_keda_scales_workers_on_each_queue_list(renderings: dict[str, Rendering]) -> None:
    rendering = renderings["keda-values"]
    deployment = rendering.get("Deployment", "worker")
    assert "replicas" not in deployment["spec"], "the autoscaler owns the replica count"
    assert rendering.find("HorizontalPodAutoscaler", "worker") is None
    (scaled,) = rendering.of_kind("ScaledObject")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    assert scaled["spec"]["scaleTargetRef"] == {"name": name_of(deployment)}
    assert (scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"]) == (1, 20)
    triggers = scaled["spec"]["triggers"]
    assert [t["metadata"]["listName"] for t in triggers] == ["celery", "reports"]
    for trigger in triggers:
        assert trigger["type"] == "redis"
        assert trigger["metadata"]["address"] == "bk-beatkeeper-redis.beatkeeper.svc:6379"
        assert trigger["metadata"]["listLength"] == "25"
        assert trigger["authenticationRef"] == {"name": "bk-beatkeeper-worker"}
    (auth,) = rendering.of_kind("TriggerAuthentication")
    assert auth["spec"]["secretTargetRef"] == [
        {"parameter": "password", "name": "bk-beatkeeper-redis", "key": "redis-password"}
    ]


def test_hpa_scales_workers_on_cpu(helm: Path) -> None:
    result = template(helm, "--set", "worker.autoscaling.enabled=true")
    assert result.returncode == 0, result.stderr
    objects = parse(result.stdout)
    (hpa,) = [obj for obj in objects if obj["kind"] == "HorizontalPodAutoscaler"]
    assert hpa["spec"]["scaleTargetRef"]["name"] == "bk-beatkeeper-worker"
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    worker = [o for o in objects if o["kind"] == "Deployment" and name_of(o).endswith("-worker")]
    assert "replicas" not in worker[0]["spec"]


def test_every_python_role_reads_the_settings_environment(rendering: Rendering) -> None:
    for component in PYTHON_ROLES:
        container = _pod(rendering, "Deployment", component)["containers"][0]
        env = env_of(container)
        for name in SETTINGS:
            assert name in env, f"{rendering.scenario}: {component} lacks {name}"
        assert ("BEATKEEPER_BROKER_URL" in env) is (component != "operator")
        port = int(env["BEATKEEPER_METRICS_PORT"]["value"])
        assert {"name": "metrics", "containerPort": port, "protocol": "TCP"} in container["ports"]


def test_external_secrets_and_imports_reach_every_role(renderings: dict[str, Rendering]) -> None:
    rendering = renderings["external-db-values"]
    container = _pod(rendering, "Deployment", "worker")["containers"][0]
    env = env_of(container)
    assert env["BEATKEEPER_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "beatkeeper-database",
        "key": "url",
    }
    assert env["BEATKEEPER_BROKER_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "beatkeeper-broker",
        "key": "url",
    }
    assert env["BEATKEEPER_IMPORTS"]["value"] == "myapp.tasks,myapp.reports"
    assert container["image"] == "registry.example.com/platform/beatkeeper:0.1.0"
    assert rendering.of_kind("StatefulSet") == []
    secrets = {name_of(secret) for secret in rendering.of_kind("Secret")}
    assert secrets == {"bk-beatkeeper-flower"}


def test_image_digest_wins_over_the_tag(helm: Path) -> None:
    digest = "sha256:" + "a" * 64
    result = template(helm, "--set", f"image.digest={digest}")
    assert result.returncode == 0, result.stderr
    images = {
        container["image"]
        for obj in parse(result.stdout)
        if obj["kind"] == "Deployment"
        for container in obj["spec"]["template"]["spec"]["containers"]
    }
    assert images == {f"beatkeeper@{digest}"}


def test_built_in_servers_persist_their_data(renderings: dict[str, Rendering]) -> None:
    rendering = renderings["default"]
    redis = rendering.get("StatefulSet", "redis")
    command = " ".join(redis["spec"]["template"]["spec"]["containers"][0]["command"])
    assert "--appendonly yes" in command
    assert "$REDIS_PASSWORD" in command, "the password never appears in the pod spec"
    for component in ("redis", "postgresql"):
        (claim,) = rendering.get("StatefulSet", component)["spec"]["volumeClaimTemplates"]
        assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    database = rendering.get("Secret", "postgresql")
    assert annotations_of(database)["helm.sh/resource-policy"] == "keep"
    url = database["stringData"]["database-url"]
    assert url.startswith("postgresql+psycopg://beatkeeper:")
    assert url.endswith("@bk-beatkeeper-postgresql:5432/beatkeeper")


def test_service_monitor_scrapes_every_metrics_port(renderings: dict[str, Rendering]) -> None:
    rendering = renderings["external-db-values"]
    (monitor,) = rendering.of_kind("ServiceMonitor")
    service = rendering.get("Service", "metrics")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert service["spec"]["selector"]["beatkeeper.io/metrics"] == "true"
    for component in PYTHON_ROLES:
        labels = rendering.get("Deployment", component)["spec"]["template"]["metadata"]["labels"]
        assert labels["beatkeeper.io/metrics"] == "true"
    assert renderings["default"].of_kind("ServiceMonitor") == []


OPTIONAL_PARTS = {
    "flower.enabled=false": ("Deployment", "flower"),
    "tests.enabled=false": ("Pod", "test"),
    "operator.rbac.create=false": ("ClusterRole", "operator"),
    "beat.replicas=1": ("PodDisruptionBudget", "beat"),
}


def test_optional_parts_can_be_left_out(helm: Path) -> None:
    for setting, (kind, component) in OPTIONAL_PARTS.items():
        result = template(helm, "--set", setting)
        assert result.returncode == 0, f"{setting}: {result.stderr}"
        left = [
            obj
            for obj in parse(result.stdout)
            if obj["kind"] == kind and name_of(obj).endswith(f"-{component}")
        ]
        assert left == [], setting


def test_built_in_redis_refuses_writes_before_its_memory_limit(helm: Path) -> None:
    def server_command(*args: str) -> str:
        result = template(helm, *args)
        assert result.returncode == 0, result.stderr
        (redis,) = [
            obj
            for obj in parse(result.stdout)
            if obj["kind"] == "StatefulSet" and name_of(obj).endswith("-redis")
        ]
        return " ".join(redis["spec"]["template"]["spec"]["containers"][0]["command"])

    # 80% of the 512Mi limit; never evicting, since the keys are queued Celery messages.
    assert "--maxmemory 429496729 --maxmemory-policy noeviction" in server_command()
    assert "--maxmemory 1600000000 " in server_command("--set", "redis.resources.limits.memory=2G")
    assert "--maxmemory 300mb " in server_command("--set", "redis.maxmemory=300mb")
    refused = template(helm, "--set", "redis.maxmemoryPolicy=allkeys-lru")
    assert refused.returncode != 0
    assert "/redis/maxmemoryPolicy" in refused.stderr


def test_built_in_postgresql_gets_a_memory_backed_dev_shm(renderings: dict[str, Rendering]) -> None:
    pod = renderings["default"].get("StatefulSet", "postgresql")["spec"]["template"]["spec"]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    mounts = {mount["mountPath"]: mount["name"] for mount in pod["containers"][0]["volumeMounts"]}
    assert volumes[mounts["/dev/shm"]]["emptyDir"] == {"medium": "Memory", "sizeLimit": "256Mi"}


def test_built_in_servers_are_governed_by_headless_services(rendering: Rendering) -> None:
    services = {name_of(service): service for service in rendering.of_kind("Service")}
    for stateful_set in rendering.of_kind("StatefulSet"):
        governing = services[stateful_set["spec"]["serviceName"]]
        assert governing["spec"]["clusterIP"] == "None", name_of(stateful_set)
        assert governing["spec"]["selector"] == stateful_set["spec"]["selector"]["matchLabels"]


def test_built_in_servers_have_startup_probes(renderings: dict[str, Rendering]) -> None:
    for component in ("postgresql", "redis"):
        pod = renderings["default"].get("StatefulSet", component)["spec"]["template"]["spec"]
        container = pod["containers"][0]
        startup = container["startupProbe"]
        assert startup["exec"] == container["livenessProbe"]["exec"], component
        assert startup["periodSeconds"] * startup["failureThreshold"] >= 300, component
