"""Pods as a kubelet runs them, on a container engine: the heart of the "kubelet for tests".

A pod is an infrastructure container that owns the network namespace (its IP, its
hostname, the Service names that resolve to it) and the pod's containers joined to it:
init containers one after the other, each to a successful exit, then the containers.
Every container gets exactly what the rendered spec says: command and args (with
``$(VAR)`` expansion), env resolved from the rendered Secrets and ConfigMaps, volumes as
files, and the pod's and container's securityContext as engine flags.

What a pod needs from its cluster (Secrets, ConfigMaps, the network, the service-account
files) comes through ``PodContext``; ``cluster.py`` builds it from the rendering.
"""

from __future__ import annotations

import base64
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine import LABEL, Engine

Object = dict[str, Any]
#: Where a pod finds its service-account files (the kubelet's projected token volume).
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
_REFERENCE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)|\$\$\(")


class PodFailedError(AssertionError):
    """A pod did not do what its spec promises; the message holds the container's logs."""


@dataclass(frozen=True)
class PodContext:
    """What the cluster gives every pod."""

    engine: Engine
    session: str
    namespace: str
    network: str
    infra_image: str
    workdir: Path
    secrets: Mapping[str, Object]
    config_maps: Mapping[str, Object]
    #: Host directory holding token, ca.crt and namespace, and the API server's address.
    service_account_dir: Path | None = None
    api_server: tuple[str, int] | None = None


@dataclass
class Pod:
    """One running pod: its name, labels, spec and the engine containers behind it."""

    context: PodContext
    name: str
    labels: dict[str, str]
    spec: Object
    owner: str = ""
    aliases: list[str] = field(default_factory=list)
    claims: dict[str, Path] = field(default_factory=dict)
    ip: str = ""
    started: dict[str, float] = field(default_factory=dict)
    succeeded: bool = False

    @property
    def finishes(self) -> bool:
        """A Job's or a test's pod: its containers run to an exit instead of serving."""
        return self.spec.get("restartPolicy", "Always") != "Always"

    @property
    def infra(self) -> str:
        return f"{self.context.session}-{self.name}"

    def container_name(self, container: str) -> str:
        return f"{self.infra}-{container}"

    # --- lifecycle -----------------------------------------------------------------------

    def create(self) -> None:
        """Start the infrastructure container: the pod's IP, hostname and Service names."""
        engine = self.context.engine
        args = ["run", "--detach", "--name", self.infra, "--hostname", self.name]
        args += ["--label", f"{LABEL}={self.context.session}"]
        network = self.context.network
        args += ["--network", network, *[f"--network-alias={alias}" for alias in self.aliases]]
        if self.context.api_server is not None:
            args += ["--add-host", f"kubernetes.default.svc:{self.context.api_server[0]}"]
        engine.run(*args, "--entrypoint", "sleep", self.context.infra_image, "infinity")
        template = "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}"
        self.ip = engine.run("inspect", "--format", template, self.infra).stdout.strip()
        self._prepare_volumes()

    def run_init_containers(self, *, timeout: float) -> None:
        """Each init container in order, each to exit 0, as the kubelet requires."""
        for container in self.spec.get("initContainers", []):
            self.start(container)
            self.wait_for_exit(container["name"], timeout=timeout, expect_success=True)

    def start_containers(self) -> None:
        for container in self.spec["containers"]:
            self.start(container)

    def start(self, container: Object) -> None:
        engine = self.context.engine
        name = self.container_name(container["name"])
        engine.run("rm", "--force", name, check=False)
        env = self.environment(container)
        args = ["run", "--detach", "--name", name, "--label", f"{LABEL}={self.context.session}"]
        args += [f"--network=container:{self.infra}"]
        if engine.is_podman:
            args += [f"--uts=container:{self.infra}"]
        args += self.security_flags(container)
        args += self.volume_flags(container)
        args += [f"--env={key}={value}" for key, value in env.items()]
        if container.get("workingDir"):
            args += ["--workdir", container["workingDir"]]
        command = [expand(part, env) for part in container.get("command", [])]
        arguments = [expand(part, env) for part in container.get("args", [])]
        if command:
            args += ["--entrypoint", command[0]]
        engine.run(*args, container["image"], *command[1:], *arguments)
        self.started[container["name"]] = time.monotonic()

    def wait_for_exit(self, container: str, *, timeout: float, expect_success: bool) -> int:
        """The container's exit code; a PodFailedError with its logs on timeout or failure."""
        name = self.container_name(container)
        deadline = time.monotonic() + timeout
        while (state := self.state(name)) not in {"exited", "stopped"}:
            if state == "missing":
                raise PodFailedError(f"{self.name}: container {container} was removed")
            if time.monotonic() > deadline:
                raise PodFailedError(
                    f"{self.name}: container {container} did not finish within {timeout:.0f}s;"
                    f" its log ends:\n{self.logs(container)}"
                )
            time.sleep(0.5)
        template = "{{.State.ExitCode}}"
        code = int(self.context.engine.run("inspect", "--format", template, name).stdout)
        if expect_success and code != 0:
            raise PodFailedError(
                f"{self.name}: container {container} exited {code}; its log ends:\n"
                f"{self.logs(container)}"
            )
        return code

    def state(self, engine_name: str) -> str:
        result = self.context.engine.run(
            "inspect", "--format", "{{.State.Status}}", engine_name, check=False
        )
        return result.stdout.strip() if result.returncode == 0 else "missing"

    def is_running(self, container: str) -> bool:
        return self.state(self.container_name(container)) == "running"

    def logs(self, container: str, *, tail: int = 15) -> str:
        result = self.context.engine.run(
            "logs", "--tail", str(tail), self.container_name(container), check=False
        )
        return (result.stdout + result.stderr).strip()

    def kill(self, container: str) -> None:
        """SIGKILL the container, as an OOM kill or a node failure would."""
        self.context.engine.run("kill", "--signal", "KILL", self.container_name(container))

    def restart(self, container: str) -> None:
        """Start the killed container again, as the kubelet does (restartPolicy Always)."""
        self.context.engine.run("start", self.container_name(container))
        self.started[container] = time.monotonic()

    def exec(self, container: str, command: list[str], *, timeout: float) -> tuple[int, str]:
        result = self.context.engine.run(
            "exec", self.container_name(container), *command, check=False, timeout=timeout
        )
        return result.returncode, (result.stdout + result.stderr).strip()

    # --- what each container gets ---------------------------------------------------------

    def environment(self, container: Object) -> dict[str, str]:
        """env and envFrom as the kubelet resolves them: later entries win, $(VAR) expands."""
        env: dict[str, str] = {}
        if self.context.api_server is not None:
            env["KUBERNETES_SERVICE_HOST"] = self.context.api_server[0]
            env["KUBERNETES_SERVICE_PORT"] = str(self.context.api_server[1])
        for source in container.get("envFrom", []):
            env.update(self._env_from(source))
        for item in container.get("env", []):
            if "valueFrom" in item:
                env[item["name"]] = self._value_from(item["valueFrom"], container)
            else:
                env[item["name"]] = expand(str(item.get("value", "")), env)
        return env

    def _env_from(self, source: Object) -> dict[str, str]:
        prefix = source.get("prefix", "")
        if "secretRef" in source:
            data = secret_data(self._secret(source["secretRef"]["name"]))
        else:
            data = dict(self._config_map(source["configMapRef"]["name"]).get("data") or {})
        return {f"{prefix}{key}": value for key, value in data.items()}

    def _value_from(self, source: Object, container: Object) -> str:
        if "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            return secret_data(self._secret(ref["name"]))[ref["key"]]
        if "configMapKeyRef" in source:
            ref = source["configMapKeyRef"]
            return str(self._config_map(ref["name"])["data"][ref["key"]])
        if "fieldRef" in source:
            return self._field(source["fieldRef"]["fieldPath"])
        if "resourceFieldRef" in source:
            ref = source["resourceFieldRef"]
            return str(container.get("resources", {}).get("limits", {}).get(ref["resource"], ""))
        raise PodFailedError(f"{self.name}: env source {source} is not emulated")

    def _field(self, path: str) -> str:
        fields = {
            "metadata.name": self.name,
            "metadata.namespace": self.context.namespace,
            "status.podIP": self.ip,
            "spec.nodeName": "node-0",
            "spec.serviceAccountName": self.spec.get("serviceAccountName", "default"),
        }
        if path not in fields:
            raise PodFailedError(f"{self.name}: fieldRef {path} is not emulated")
        return fields[path]

    def _secret(self, name: str) -> Object:
        if name not in self.context.secrets:
            raise PodFailedError(f"{self.name}: Secret {name} does not exist (the pod would wait)")
        return self.context.secrets[name]

    def _config_map(self, name: str) -> Object:
        if name not in self.context.config_maps:
            raise PodFailedError(f"{self.name}: ConfigMap {name} does not exist")
        return self.context.config_maps[name]

    def security_flags(self, container: Object) -> list[str]:
        pod_context = self.spec.get("securityContext") or {}
        context = {**pod_context, **(container.get("securityContext") or {})}
        flags: list[str] = []
        user = context.get("runAsUser")
        group = context.get("runAsGroup")
        if user is not None:
            flags += ["--user", f"{user}:{group}" if group is not None else str(user)]
        if self.context.engine.is_podman:
            # podman adds a passwd entry for a uid the image lacks; a kubelet does not.
            flags.append("--passwd=false")
        if context.get("runAsNonRoot"):
            self._check_non_root(container, user)
        groups = [pod_context.get("fsGroup"), *pod_context.get("supplementalGroups", [])]
        flags += [f"--group-add={group}" for group in groups if group is not None]
        if context.get("readOnlyRootFilesystem"):
            flags.append("--read-only")
            if self.context.engine.is_podman:
                flags.append("--read-only-tmpfs=false")  # podman adds writable /tmp otherwise
        capabilities = context.get("capabilities") or {}
        flags += [f"--cap-drop={cap}" for cap in capabilities.get("drop", [])]
        flags += [f"--cap-add={cap}" for cap in capabilities.get("add", [])]
        if context.get("allowPrivilegeEscalation") is False:
            flags += ["--security-opt", "no-new-privileges"]
        if context.get("privileged"):
            flags.append("--privileged")
        if (context.get("seccompProfile") or {}).get("type") == "Unconfined":
            flags += ["--security-opt", "seccomp=unconfined"]
        return flags

    def _check_non_root(self, container: Object, user: int | None) -> None:
        """The kubelet refuses a runAsNonRoot container that would run as root."""
        if user is None:
            image_user = self.context.engine.run(
                "image", "inspect", "--format", "{{.Config.User}}", container["image"]
            ).stdout.strip()
            uid = image_user.split(":")[0]
            if not uid.isdigit():
                raise PodFailedError(
                    f"{self.name}/{container['name']}: runAsNonRoot with image user "
                    f"{image_user!r}, which is not numeric: the kubelet cannot verify it"
                )
            user = int(uid)
        if user == 0:
            raise PodFailedError(f"{self.name}/{container['name']}: runAsNonRoot but uid 0")

    # --- volumes ---------------------------------------------------------------------------

    def volume_dir(self, volume: str) -> Path:
        return self.context.workdir / "pods" / self.name / volume

    def volume_flags(self, container: Object) -> list[str]:
        flags = []
        for mount in container.get("volumeMounts", []):
            source = self.claims.get(mount["name"]) or self.volume_dir(mount["name"])
            if mount.get("subPath"):
                source = source / mount["subPath"]
            read_only = mount.get("readOnly") or self._is_read_only_volume(mount["name"])
            suffix = ":ro" if read_only else ""
            flags += ["--volume", f"{source}:{mount['mountPath']}{suffix}"]
        if self._mounts_service_account():
            assert self.context.service_account_dir is not None
            flags += ["--volume", f"{self.context.service_account_dir}:{SERVICE_ACCOUNT_DIR}:ro"]
        return flags

    def _mounts_service_account(self) -> bool:
        return bool(
            self.spec.get("automountServiceAccountToken", True)
            and self.context.service_account_dir is not None
        )

    def _is_read_only_volume(self, name: str) -> bool:
        for volume in self.spec.get("volumes", []):
            if volume["name"] == name:
                return any(kind in volume for kind in ("secret", "configMap", "projected"))
        return False

    def _prepare_volumes(self) -> None:
        fs_group = (self.spec.get("securityContext") or {}).get("fsGroup")
        for volume in self.spec.get("volumes", []):
            if volume["name"] in self.claims:
                continue
            directory = self.volume_dir(volume["name"])
            directory.mkdir(parents=True, exist_ok=True)
            if "emptyDir" in volume:
                directory.chmod(0o777)
            elif "secret" in volume:
                source = volume["secret"]
                data = secret_data(self._secret(source["secretName"]))
                _write_files(directory, data, source, fs_group)
            elif "configMap" in volume:
                source = volume["configMap"]
                data = dict(self._config_map(source["name"]).get("data") or {})
                _write_files(directory, data, source, fs_group)
            else:
                raise PodFailedError(f"{self.name}: volume {volume} is not emulated")

    def delete(self) -> None:
        engine = self.context.engine
        names = [self.container_name(c["name"]) for c in self._all_containers()]
        engine.run("rm", "--force", "--time", "0", *names, self.infra, check=False)

    def _all_containers(self) -> list[Object]:
        return [*self.spec.get("initContainers", []), *self.spec["containers"]]


def claim_directory(path: Path, fs_group: int | None) -> Path:
    """A PersistentVolumeClaim's directory, owned the way fsGroup makes a volume."""
    path.mkdir(parents=True, exist_ok=True)
    if fs_group is not None:
        os.chown(path, 0, fs_group)
        path.chmod(0o2775)
    return path


def secret_data(secret: Object) -> dict[str, str]:
    """A Secret's values, decoded: data is base64, stringData is plain (and wins)."""
    data = {
        key: base64.b64decode(value).decode() for key, value in (secret.get("data") or {}).items()
    }
    data.update({key: str(value) for key, value in (secret.get("stringData") or {}).items()})
    return data


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: known names expand, unknown ones stay, $$( escapes."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$(":
            return "$("
        name = match.group(1)
        return env.get(name, match.group(0))

    return _REFERENCE.sub(replace, text)


def _write_files(
    directory: Path, data: Mapping[str, str], source: Object, fs_group: int | None
) -> None:
    items = source.get("items") or [{"key": key, "path": key} for key in data]
    for item in items:
        target = directory / item["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(data[item["key"]])
        target.chmod(item.get("mode", source.get("defaultMode", 0o644)))
        if fs_group is not None:
            os.chown(target, 0, fs_group)
