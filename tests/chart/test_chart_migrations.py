"""Migrations run before new code: as Helm hooks, or as a plain Job pods wait for."""

from __future__ import annotations

from pathlib import Path

from chart_render import Object, Rendering, annotations_of, env_of, name_of, parse, template

WORKLOADS = ("operator", "beat", "worker")
WAIT_ARGS = ["beatkeeper", "migrate", "--wait", "--timeout", "300"]


def _migrate_job(rendering: Rendering) -> Object:
    jobs = [job for job in rendering.of_kind("Job") if "-migrate" in name_of(job)]
    assert len(jobs) == 1, rendering.scenario
    return jobs[0]


def _init_containers(rendering: Rendering, component: str) -> list[Object]:
    spec = rendering.get("Deployment", component)["spec"]["template"]["spec"]
    return list(spec.get("initContainers", []))


def _hook_objects(rendering: Rendering) -> list[Object]:
    return [obj for obj in rendering.objects if "helm.sh/hook" in annotations_of(obj)]


def test_migrate_job_runs_beatkeeper_migrate_with_database_credentials_only(
    rendering: Rendering,
) -> None:
    container = _migrate_job(rendering)["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["beatkeeper", "migrate"]
    env = env_of(container)
    assert "BEATKEEPER_DATABASE_URL" in env
    assert "BEATKEEPER_BROKER_URL" not in env


def test_external_database_migrates_before_install_and_upgrade(
    renderings: dict[str, Rendering],
) -> None:
    rendering = renderings["external-db-values"]
    job = _migrate_job(rendering)
    assert annotations_of(job)["helm.sh/hook"] == "pre-install,pre-upgrade"
    # The schema is at head before any pod starts, so pods need not wait.
    for component in WORKLOADS:
        assert _init_containers(rendering, component) == [], component


def test_hook_job_has_its_own_service_account_created_before_it(
    renderings: dict[str, Rendering],
) -> None:
    rendering = renderings["external-db-values"]
    job = _migrate_job(rendering)
    account = rendering.get("ServiceAccount", "migrate")
    assert job["spec"]["template"]["spec"]["serviceAccountName"] == name_of(account)
    assert annotations_of(account)["helm.sh/hook"] == annotations_of(job)["helm.sh/hook"]
    assert int(annotations_of(account)["helm.sh/hook-weight"]) < int(
        annotations_of(job)["helm.sh/hook-weight"]
    )
    assert account["automountServiceAccountToken"] is False
    # The database Secret is the user's, which exists before the release.
    url = env_of(job["spec"]["template"]["spec"]["containers"][0])["BEATKEEPER_DATABASE_URL"]
    assert url["valueFrom"]["secretKeyRef"] == {"name": "beatkeeper-database", "key": "url"}


def test_built_in_database_migrates_after_install_and_pods_wait(
    renderings: dict[str, Rendering],
) -> None:
    rendering = renderings["default"]
    job = _migrate_job(rendering)
    # The built-in PostgreSQL and its Secret do not exist before the first install.
    assert annotations_of(job)["helm.sh/hook"] == "post-install,pre-upgrade"
    init = job["spec"]["template"]["spec"]["initContainers"]
    assert [container["name"] for container in init] == ["wait-for-postgresql"]
    for component in WORKLOADS:
        containers = _init_containers(rendering, component)
        assert [c["args"] for c in containers] == [WAIT_ARGS], component


def test_without_hooks_a_plain_job_and_init_containers_that_wait(
    renderings: dict[str, Rendering],
) -> None:
    rendering = renderings["no-hooks-values"]
    hooks = {annotations_of(obj)["helm.sh/hook"] for obj in _hook_objects(rendering)}
    assert hooks == {"test"}, "only `helm test` may be a hook"
    assert rendering.find("ServiceAccount", "migrate") is None
    job = _migrate_job(rendering)
    assert job["spec"]["ttlSecondsAfterFinished"] == 86400
    for component in WORKLOADS:
        containers = _init_containers(rendering, component)
        assert [c["name"] for c in containers] == ["wait-for-migrations"], component
        assert containers[0]["args"] == WAIT_ARGS
        assert "BEATKEEPER_BROKER_URL" not in env_of(containers[0])


def _plain_job_name(helm: Path, *settings: str) -> str:
    args = [arg for setting in settings for arg in ("--set", setting)]
    result = template(helm, "--set", "migrations.useHelmHooks=false", *args)
    assert result.returncode == 0, result.stderr
    jobs = [obj for obj in parse(result.stdout) if obj["kind"] == "Job"]
    return name_of(jobs[0])


def test_plain_job_name_changes_with_the_image(helm: Path) -> None:
    # A Job's pod template is immutable: a new image must make a new Job, not a patch.
    assert _plain_job_name(helm, "image.tag=1.0.0") != _plain_job_name(helm, "image.tag=1.0.1")
    assert _plain_job_name(helm, "image.tag=1.0.0") == _plain_job_name(helm, "image.tag=1.0.0")


def test_plain_job_name_changes_with_anything_its_pod_runs(helm: Path) -> None:
    # The name hashes the whole pod template: a changed environment variable, resource or
    # label is a new Job too, or the upgrade (or GitOps sync) fails on the immutable field.
    base = _plain_job_name(helm, "config.logLevel=INFO")
    assert _plain_job_name(helm, "config.logLevel=INFO") == base
    assert _plain_job_name(helm, "config.logLevel=DEBUG") != base
    assert _plain_job_name(helm, "migrations.resources.limits.memory=300Mi") != base
    # Job-level settings are not part of the pod template and keep the name.
    assert _plain_job_name(helm, "migrations.backoffLimit=3") == base


def test_helm_test_pod_runs_the_smoke_command(renderings: dict[str, Rendering]) -> None:
    pod = renderings["default"].get("Pod", "test")
    assert annotations_of(pod)["helm.sh/hook"] == "test"
    container = pod["spec"]["containers"][0]
    assert container["args"] == ["beatkeeper", "smoke", "--timeout", "180"]
    assert "BEATKEEPER_DATABASE_URL" in env_of(container)


def test_wait_for_postgresql_names_the_user_pg_isready_needs(
    renderings: dict[str, Rendering],
) -> None:
    # As uid 10001 (no passwd entry in the postgres image) and with no PGUSER, libpq makes
    # no connection attempt at all: pg_isready exits 3 forever and the install hangs.
    (wait,) = _migrate_job(renderings["default"])["spec"]["template"]["spec"]["initContainers"]
    env = {name: item["value"] for name, item in env_of(wait).items()}
    assert env == {
        "PGHOST": "bk-beatkeeper-postgresql",
        "PGPORT": "5432",
        "PGUSER": "beatkeeper",
        "PGDATABASE": "beatkeeper",
        "PGCONNECT_TIMEOUT": "5",
    }
    assert "pg_isready --quiet;" in wait["command"][-1]
