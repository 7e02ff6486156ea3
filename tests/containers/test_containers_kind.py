"""The kind values (the dev loop's and the e2e suite's) run for real, examples image included.

The operator reaches the API emulator as a pod reaches its cluster; the example Schedules
of manifests/examples/ are applied through it, must become Ready and record succeeded
runs. Flower answers at the ingress path only with the generated credentials. A Beat
replica killed mid-load loses and duplicates no run.
"""

from __future__ import annotations

import base64
import itertools
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cluster import Cluster, NewCluster
from database import Database, runs_by_schedule
from engine import REPO_ROOT
from images import Images
from pods import Pod, secret_data
from probes import container_port
from render import NAMESPACE, render, scenario_values

# The first module to run also builds the images (minutes on a cold cache).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

EXAMPLES = REPO_ROOT / "manifests" / "examples"
SCHEDULES = "/apis/beatkeeper.io/v1alpha1/namespaces/{namespace}/schedules"
TRIGGERS = ("cron", "interval", "rrule", "at")
BOUNDS = ("startTime", "endTime", "exclude", "maxRuns", "jitter", "suspend", "startingDeadline")


@pytest.fixture(scope="module")
def cluster(new_cluster: NewCluster, helm: Path, images: Images) -> Iterator[Cluster]:
    objects = render(helm, "kind", images)
    with new_cluster(api_server=True) as cluster:
        cluster.install(objects, timeout=120)
        cluster.wait_ready(timeout=240)
        yield cluster


@pytest.fixture(scope="module")
def database(cluster: Cluster) -> Iterator[Database]:
    db = Database.of_release(cluster)
    try:
        yield db
    finally:
        db.close()


def test_the_kind_values_run_the_examples_image() -> None:
    assert (scenario_values("kind").get("image") or {}).get("repository") == "beatkeeper-examples"


def test_every_probe_passes(cluster: Cluster) -> None:
    cluster.wait_ready(timeout=60)
    assert cluster.liveness_failures() == []


def example_schedules() -> list[dict[str, Any]]:
    return [
        doc
        for path in sorted(EXAMPLES.glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc and doc.get("kind") == "Schedule"
    ]


def schedules_url(namespace: str, name: str = "") -> str:
    url = SCHEDULES.format(namespace=namespace)
    return f"{url}/{name}" if name else url


def get_schedule(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    schedule: dict[str, Any] = cluster.api.request("GET", schedules_url(namespace, name))
    return schedule


def wait_for(check: Any, *, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def ready_condition(schedule: dict[str, Any]) -> dict[str, Any]:
    for condition in schedule.get("status", {}).get("conditions", []):
        if condition["type"] == "Ready":
            return dict(condition)
    return {}


def test_example_schedules_become_ready(cluster: Cluster) -> None:
    for doc in example_schedules():
        namespace = doc["metadata"].get("namespace", "default")
        cluster.api.request("POST", schedules_url(namespace), doc)
    for doc in example_schedules():
        meta = doc["metadata"]
        namespace = meta.get("namespace", "default")
        condition = wait_for(
            lambda namespace=namespace, name=meta["name"]: ready_condition(
                get_schedule(cluster, namespace, name)
            ),
            timeout=90,
            what=f"Schedule {meta['name']} to get a Ready condition",
        )
        assert condition["status"] == "True", condition


def test_example_schedules_record_succeeded_runs(cluster: Cluster) -> None:
    # The examples run nightly or monthly: re-time each to every 10 seconds (an edit plans
    # from now on) and wait for its first run to succeed.
    for doc in example_schedules():
        meta = doc["metadata"]
        patch: dict[str, Any] = dict.fromkeys((*TRIGGERS, *BOUNDS))
        patch["interval"] = "10s"
        url = schedules_url(meta.get("namespace", "default"), meta["name"])
        cluster.api.request("PATCH", url, {"spec": patch})
    for doc in example_schedules():
        meta = doc["metadata"]
        namespace = meta.get("namespace", "default")

        def last_state(name: str = meta["name"], namespace: str = namespace) -> bool:
            last_run = get_schedule(cluster, namespace, name).get("status", {}).get("lastRun")
            return bool(last_run and last_run.get("state") == "succeeded")

        wait_for(last_state, timeout=180, what=f"a succeeded run of {meta['name']}")


def flower_at_ingress(cluster: Cluster) -> tuple[str, tuple[str, str]]:
    """The URL the ingress would send to Flower's pod, and the generated credentials."""
    (ingress,) = [obj for (kind, _), obj in cluster.objects.items() if kind == "Ingress"]
    (rule,) = ingress["spec"]["rules"]
    (path,) = rule["http"]["paths"]
    backend = path["backend"]["service"]
    service = cluster.objects["Service", backend["name"]]
    (port,) = [p for p in service["spec"]["ports"] if p.get("name") == backend["port"]["name"]]
    (pod,) = [p for p in cluster.running_pods() if p.aliases and backend["name"] in p.aliases]
    target = container_port(pod.spec["containers"][0], port.get("targetPort", port["port"]))
    auth = secret_data(cluster.objects["Secret", "bk-beatkeeper-flower"])
    url = f"http://{pod.ip}:{target}{path['path'].rstrip('/')}/"
    return url, (auth["username"], auth["password"])


def http_status(url: str, credentials: tuple[str, str] | None = None) -> int:
    request = urllib.request.Request(url)
    if credentials is not None:
        token = base64.b64encode(":".join(credentials).encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def test_flower_answers_at_the_ingress_path_only_with_the_credentials(cluster: Cluster) -> None:
    url, credentials = flower_at_ingress(cluster)
    assert http_status(url) == 401
    assert http_status(url, (credentials[0], "wrong")) == 401
    assert http_status(url, credentials) == 200


def beat_pods(cluster: Cluster) -> list[Pod]:
    return cluster.pods_of("Deployment", "bk-beatkeeper-beat")


def test_killing_a_beat_mid_load_loses_and_duplicates_no_run(
    cluster: Cluster, database: Database
) -> None:
    names = [f"load-{index:03d}" for index in range(40)]
    for name in names:
        body = {
            "apiVersion": "beatkeeper.io/v1alpha1",
            "kind": "Schedule",
            "metadata": {"name": name, "namespace": "load"},
            "spec": {"task": "beatkeeper.noop", "interval": "1s"},
        }
        cluster.api.request("POST", schedules_url("load"), body)
    wait_for(
        lambda: database.count_runs(namespace="load", state="succeeded") >= 200,
        timeout=120,
        what="the load to run",
    )
    victim = beat_pods(cluster)[0]
    victim.kill("beat")
    time.sleep(3)  # both replicas' work is at stake for a few ticks: the survivor must cover
    victim.restart("beat")
    cluster.wait_until_probe_passes(
        victim, victim.spec["containers"][0], "readinessProbe", time.monotonic() + 120
    )
    after_restart = database.count_runs(namespace="load", state="succeeded")
    wait_for(
        lambda: database.count_runs(namespace="load", state="succeeded") >= after_restart + 200,
        timeout=120,
        what="the load to go on after the restart",
    )
    for name in names:
        cluster.api.request("PATCH", schedules_url("load", name), {"spec": {"suspend": True}})
    wait_for(
        lambda: database.suspended(namespace="load") == len(names),
        timeout=60,
        what="every load schedule to be suspended",
    )
    wait_for(
        lambda: database.count_unfinished(namespace="load") == 0,
        timeout=120,
        what="every planned run to finish",
    )
    for schedule, runs in runs_by_schedule(database.runs(namespace="load")).items():
        planned = [run.planned_at for run in runs]
        assert len(planned) == len(set(planned)), f"{schedule}: an occurrence planned twice"
        steps = {
            (later - earlier).total_seconds() for earlier, later in itertools.pairwise(planned)
        }
        assert steps <= {1.0}, f"{schedule}: occurrences lost (gaps {sorted(steps)})"
        states = {(run.state, run.attempt) for run in runs}
        assert states == {("succeeded", 1)}, f"{schedule}: {states}"


def test_pods_are_reached_through_the_cluster_network(cluster: Cluster) -> None:
    # Sanity of the emulation itself: the namespace in the service-account files is the
    # release's, and the operator pod resolves the API server's name.
    (operator,) = cluster.pods_of("Deployment", "bk-beatkeeper-operator")
    code, output = operator.exec(
        "operator",
        ["cat", "/var/run/secrets/kubernetes.io/serviceaccount/namespace"],
        timeout=30,
    )
    assert (code, output) == (0, NAMESPACE)
