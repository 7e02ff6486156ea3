"""One namespace of an emulated cluster: a rendered release installed as helm installs it.

``Cluster.install`` follows helm's order: pre-install hooks by weight (a hook Job must
complete), then every other object at once (workload pods start together; their init
containers hold them as on a cluster), then post-install hooks. ``Cluster.wait_ready`` is
``helm install --wait``: every pod's containers running and every readiness probe passing,
every plain Job complete. ``Cluster.helm_test`` runs the ``test`` hook pods.

Objects that hold data (Secrets, ConfigMaps) are kept for the pods; Services become names
on the cluster network that resolve to the pods they select; workloads become pods
(``pods.py``). Everything else (RBAC, PodDisruptionBudgets, NetworkPolicies, Ingresses,
autoscalers, the CRD) is not acted on: ``NOT_EMULATED`` says what that leaves out.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import probes
from engine import LABEL, Engine
from pods import Object, Pod, PodContext, PodFailedError, claim_directory

NOT_EMULATED = (
    "RBAC enforcement (the API emulator serves any token)",
    "real scheduling: node placement, affinity, topology spread, resource requests and limits",
    "ingress controllers (requests go straight to the Service's pods at the ingress path)",
    "Service port remapping and load balancing (names resolve to pod IPs; target ports used)",
    "NetworkPolicies, PodDisruptionBudgets, autoscalers (HPA, KEDA) and rollouts",
    "the API server's schema validation, pruning, CEL rules and admission webhooks",
    "probe timing beyond initial delay and failure threshold; restarts are done by the tests",
)
WORKLOADS = {"Deployment", "StatefulSet", "Job", "Pod"}
#: The ``new_cluster`` fixture: ``with new_cluster(api_server=True) as cluster: ...``.
NewCluster = Callable[..., contextlib.AbstractContextManager["Cluster"]]


def hook_phases(obj: Object) -> set[str]:
    hook = (obj["metadata"].get("annotations") or {}).get("helm.sh/hook", "")
    return {phase.strip() for phase in hook.split(",") if phase.strip()}


def hook_weight(obj: Object) -> int:
    return int((obj["metadata"].get("annotations") or {}).get("helm.sh/hook-weight", "0"))


def labels_match(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())


@dataclass
class Cluster:
    """A namespace on a container network; pods, Services and data objects in it."""

    engine: Engine
    workdir: Path
    infra_image: str
    namespace: str = "beatkeeper"
    session: str = field(default_factory=lambda: f"bkt-{os.getpid()}-{secrets.token_hex(2)}")
    service_account_dir: Path | None = None
    #: The API server pods reach (``apiserver.ApiServer``), when the cluster has one.
    api: Any = None
    api_server: tuple[str, int] | None = None
    objects: dict[tuple[str, str], Object] = field(default_factory=dict)
    pods: dict[str, Pod] = field(default_factory=dict)
    _starting: list[Future[None]] = field(default_factory=list)
    _pool: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(16))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def network(self) -> str:
        return self.session

    def create_network(self) -> str:
        """Create the cluster network; return its gateway, the host's address on it."""
        label = f"{LABEL}={self.session}"
        self.engine.run("network", "create", "--label", label, self.network)
        # The host's side of the network (its bridge) exists once a container is attached:
        # one holds it up for the API server to listen on.
        self.engine.run(
            "run", "--detach", "--name", f"{self.session}-network", "--label", label,
            "--network", self.network, "--entrypoint", "sleep", self.infra_image, "infinity",
        )  # fmt: skip
        info = json.loads(self.engine.run("network", "inspect", self.network).stdout)[0]
        if "subnets" in info:  # podman
            return str(info["subnets"][0]["gateway"])
        return str(info["IPAM"]["Config"][0]["Gateway"])  # docker

    def context(self) -> PodContext:
        return PodContext(
            engine=self.engine,
            session=self.session,
            namespace=self.namespace,
            network=self.network,
            infra_image=self.infra_image,
            workdir=self.workdir,
            secrets=self._named("Secret"),
            config_maps=self._named("ConfigMap"),
            service_account_dir=self.service_account_dir,
            api_server=self.api_server,
        )

    def _named(self, kind: str) -> dict[str, Object]:
        return {name: obj for (k, name), obj in self.objects.items() if k == kind}

    # --- helm install / upgrade / test -------------------------------------------------------

    def install(self, objects: list[Object], *, timeout: float = 300) -> None:
        self._release(objects, before="pre-install", after="post-install", timeout=timeout)

    def upgrade(self, objects: list[Object], *, timeout: float = 300) -> None:
        """Apply a new rendering: changed workloads are replaced, new Jobs run."""
        self._release(objects, before="pre-upgrade", after="post-upgrade", timeout=timeout)

    def _release(self, objects: list[Object], *, before: str, after: str, timeout: float) -> None:
        hooks = [obj for obj in objects if hook_phases(obj)]
        regular = [obj for obj in objects if not hook_phases(obj)]
        for obj in sorted((o for o in hooks if before in hook_phases(o)), key=hook_weight):
            self.apply(obj, wait_timeout=timeout)
        for obj in regular:
            self.apply(obj, wait_timeout=None)
        for obj in sorted((o for o in hooks if after in hook_phases(o)), key=hook_weight):
            self.apply(obj, wait_timeout=timeout)

    def helm_test(self, objects: list[Object], *, timeout: float = 300) -> list[Pod]:
        tests = [obj for obj in objects if "test" in hook_phases(obj) and obj["kind"] == "Pod"]
        return [self.run_to_completion(obj, timeout=timeout) for obj in tests]

    def apply(self, obj: Object, *, wait_timeout: float | None) -> None:
        """Keep the object; start a workload's pods (and wait for a hook Job to complete)."""
        kind, name = obj["kind"], obj["metadata"]["name"]
        previous = self.objects.get((kind, name))
        self.objects[kind, name] = obj
        if kind not in WORKLOADS:
            return
        if previous is not None and _pod_template(previous) == _pod_template(obj):
            return  # unchanged: nothing restarts, as on a cluster
        if kind == "Job" and previous is not None:
            raise PodFailedError(
                f"Job {name} exists with a different pod template: a Job's template is "
                "immutable, so the API server refuses this update"
            )
        self._stop_pods_of(kind, name)
        if wait_timeout is not None:
            self.run_to_completion(obj, timeout=wait_timeout)
        elif kind in {"Job", "Pod"}:
            self._starting.append(self._pool.submit(self.run_to_completion, obj, timeout=600))
        else:
            for index in range(int(obj["spec"].get("replicas", 1))):
                pod = self.new_pod(obj, index)
                self._starting.append(self._pool.submit(self._start_pod, pod, 600))

    # --- pods ----------------------------------------------------------------------------

    def new_pod(self, owner: Object, index: int) -> Pod:
        kind, owner_name = owner["kind"], owner["metadata"]["name"]
        template = owner if kind == "Pod" else owner["spec"]["template"]
        if kind == "StatefulSet":
            name = f"{owner_name}-{index}"
        elif kind == "Pod":
            name = owner_name
        else:
            name = f"{owner_name}-{secrets.token_hex(3)}"
        labels = dict(template["metadata"].get("labels") or {})
        pod = Pod(self.context(), name, labels, template["spec"], owner=f"{kind}/{owner_name}")
        pod.aliases = self._aliases(pod, owner)
        if kind == "StatefulSet":
            pod.claims = self._claims(owner, name)
        with self._lock:
            self.pods[name] = pod
        return pod

    def _aliases(self, pod: Pod, owner: Object) -> list[str]:
        names = []
        for service in self._named("Service").values():
            if labels_match(service["spec"].get("selector") or {}, pod.labels):
                self._check_ports(service, pod)
                names.append(service["metadata"]["name"])
        if owner["kind"] == "StatefulSet":
            names.append(f"{pod.name}.{owner['spec'].get('serviceName', '')}".rstrip("."))
        suffixes = ["", f".{self.namespace}", f".{self.namespace}.svc"]
        return [name + suffix for name in names for suffix in suffixes]

    def _check_ports(self, service: Object, pod: Pod) -> None:
        ports = {
            port["name"]: port["containerPort"]
            for container in pod.spec["containers"]
            for port in container.get("ports", [])
            if "name" in port
        }
        for port in service["spec"].get("ports", []):
            target = port.get("targetPort", port["port"])
            number = ports.get(target, target) if isinstance(target, str) else target
            if number != port["port"]:
                raise PodFailedError(
                    f"Service {service['metadata']['name']} maps port {port['port']} to "
                    f"{target} ({number}): port remapping is not emulated"
                )

    def _claims(self, owner: Object, pod_name: str) -> dict[str, Path]:
        fs_group = (owner["spec"]["template"]["spec"].get("securityContext") or {}).get("fsGroup")
        return {
            claim["metadata"]["name"]: claim_directory(
                self.workdir / "claims" / f"{claim['metadata']['name']}-{pod_name}", fs_group
            )
            for claim in owner["spec"].get("volumeClaimTemplates", [])
        }

    def _start_pod(self, pod: Pod, init_timeout: float) -> None:
        pod.create()
        pod.run_init_containers(timeout=init_timeout)
        pod.start_containers()

    def run_to_completion(self, owner: Object, *, timeout: float) -> Pod:
        """A Job's (or a bare Pod's) pod, run until every container exited 0.

        A failed attempt is retried up to the Job's backoffLimit, as the Job controller does.
        """
        attempts = int(owner["spec"].get("backoffLimit", 6)) + 1 if owner["kind"] == "Job" else 1
        deadline = time.monotonic() + timeout
        failure: PodFailedError | None = None
        for _ in range(attempts):
            pod = self.new_pod(owner, 0)
            try:
                self._start_pod(pod, max(deadline - time.monotonic(), 1))
                for container in pod.spec["containers"]:
                    left = max(deadline - time.monotonic(), 1)
                    pod.wait_for_exit(container["name"], timeout=left, expect_success=True)
            except PodFailedError as error:
                failure = error
                if time.monotonic() >= deadline:
                    break
                continue
            pod.succeeded = True
            return pod
        assert failure is not None
        raise failure

    def pods_of(self, kind: str, name: str) -> list[Pod]:
        return [pod for pod in list(self.pods.values()) if pod.owner == f"{kind}/{name}"]

    def _stop_pods_of(self, kind: str, name: str) -> None:
        for pod in self.pods_of(kind, name):
            pod.delete()
            with self._lock:
                self.pods.pop(pod.name, None)

    # --- helm install --wait ----------------------------------------------------------------

    def wait_ready(self, *, timeout: float = 300) -> None:
        """Every pod started (init containers done) and every readiness probe passing."""
        deadline = time.monotonic() + timeout
        while self._starting:
            future = self._starting.pop(0)
            future.result(timeout=max(deadline - time.monotonic(), 1))
        for pod in self.running_pods():
            for container in pod.spec["containers"]:
                self.wait_until_probe_passes(pod, container, "startupProbe", deadline)
                self.wait_until_probe_passes(pod, container, "readinessProbe", deadline)

    def running_pods(self) -> list[Pod]:
        return [pod for pod in list(self.pods.values()) if not pod.finishes]

    def wait_until_probe_passes(
        self, pod: Pod, container: Object, kind: str, deadline: float
    ) -> None:
        probes.wait_until_passes(pod, container, kind, deadline)

    def liveness_failures(self) -> list[str]:
        """Each container whose liveness probe fails failureThreshold times in a row."""
        failures = []
        for pod in self.running_pods():
            for container in pod.spec["containers"]:
                failure = probes.liveness_failure(pod, container)
                if failure is not None:
                    failures.append(f"{pod.name}/{container['name']}: {failure}")
        return failures

    # --- teardown -----------------------------------------------------------------------------

    def delete(self) -> None:
        """Remove every container and the network this cluster created, whatever happened."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        # Pod by pod (a pod's containers before the infrastructure container they join),
        # the pods side by side: one at a time the engine takes seconds per container.
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(Pod.delete, list(self.pods.values())))
        remove_leftovers(self.engine, self.session)


def remove_leftovers(engine: Engine, session: str | None = None) -> None:
    """Remove containers and networks labelled by the suite (one session's, or all)."""
    label = f"label={LABEL}" if session is None else f"label={LABEL}={session}"
    names = engine.run("ps", "--all", "--quiet", "--filter", label, check=False).stdout.split()
    if names:
        engine.run("rm", "--force", "--time", "0", *names, check=False, timeout=600)
    networks = engine.run("network", "ls", "--quiet", "--filter", label, check=False).stdout.split()
    if networks:
        engine.run("network", "rm", "--force", *networks, check=False)


def remove_stale(engine: Engine) -> None:
    """Remove what sessions that died without cleaning up left (their pid is gone)."""
    names = engine.run(
        "ps", "--all", "--format", "{{.Names}}", "--filter", f"label={LABEL}", check=False
    ).stdout.split()
    networks = engine.run(
        "network", "ls", "--format", "{{.Name}}", "--filter", f"label={LABEL}", check=False
    ).stdout.split()
    sessions = {"-".join(name.split("-")[:3]) for name in [*names, *networks]}
    for session in sessions:
        pid = session.split("-")[1] if session.count("-") >= 2 else ""
        if pid.isdigit() and not _alive(int(pid)):
            remove_leftovers(engine, session)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _pod_template(obj: Object) -> Any:
    return obj["spec"] if obj["kind"] == "Pod" else obj["spec"]["template"]


def iter_workloads(objects: Iterable[Object]) -> Iterator[Object]:
    yield from (obj for obj in objects if obj["kind"] in WORKLOADS)
