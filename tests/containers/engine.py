"""The container engine the suite drives: podman, or docker where a working engine runs.

``find_engine`` returns an ``Engine`` or the reason there is none (the suite skips with it,
or fails in CI); ``missing_network_dns`` says why names would not resolve on the suite's
networks (the session fails with it up front, not later in a pod waiting for PostgreSQL).
Everything the suite does to containers goes through ``Engine.run``, one CLI call each: the
same flags work on podman and docker because pods are built the way the kubelet builds them
(an infrastructure container owning the network namespace), not with podman's own pods.

podman is given a containers.conf of its own under ``.cache/containers/``: the host's open
file limit cannot be raised by the runtime, and runc with cgroupfs works on hosts where the
default runtime refuses the cgroup layout. Nothing outside the repository is configured.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE_DIR = REPO_ROOT / ".cache" / "containers"
#: Labels every object the suite creates, so a crashed session's leftovers can be found.
LABEL = "io.beatkeeper.test-suite"

PODMAN_CONF = """\
# Written by tests/containers/engine.py for the container suite only.
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"""


#: Where podman looks for CNI plugins when containers.conf names no ``cni_plugin_dirs``.
CNI_PLUGIN_DIRS = (
    "/usr/local/libexec/cni",
    "/usr/libexec/cni",
    "/usr/local/lib/cni",
    "/usr/lib/cni",
    "/opt/cni/bin",
)
#: The Debian and Ubuntu package of the CNI plugin that resolves container names.
DNSNAME_PACKAGE = "golang-github-containernetworking-plugin-dnsname"


class EngineError(RuntimeError):
    """An engine command failed; the message holds the command and its output."""


@dataclass(frozen=True)
class Engine:
    """One container engine CLI (``podman`` or ``docker``) and the environment it runs in."""

    binary: str
    env: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return Path(self.binary).name

    @property
    def is_podman(self) -> bool:
        return self.name == "podman"

    def run(
        self, *args: str, timeout: float = 120, check: bool = True, stdin: bytes | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run one engine command; raise ``EngineError`` with its output when it fails."""
        try:
            result = subprocess.run(
                [self.binary, *args],
                input=stdin.decode() if stdin is not None else None,
                capture_output=True,
                text=True,
                timeout=timeout,
                env={**os.environ, **self.env},
                check=False,
            )
        except subprocess.TimeoutExpired as error:
            raise EngineError(
                f"`{self.name} {' '.join(args)}` timed out after {timeout}s"
            ) from error
        if check and result.returncode != 0:
            raise EngineError(
                f"`{self.name} {' '.join(args)}` exited {result.returncode}:\n"
                f"{result.stdout[-4000:]}{result.stderr[-4000:]}"
            )
        return result

    def exists(self, kind: str, name: str) -> bool:
        """Whether an image, container or network of that name exists."""
        return self.run(kind, "inspect", name, check=False).returncode == 0


def find_engine() -> Engine | str:
    """The engine to use, or why there is none (one line, for the skip message)."""
    reasons = []
    for name in ("podman", "docker"):
        binary = shutil.which(name)
        if binary is None:
            reasons.append(f"{name} is not on PATH")
            continue
        engine = Engine(binary, _environment(name))
        probe = engine.run("info", check=False, timeout=60)
        if probe.returncode == 0:
            return engine
        reasons.append(f"`{name} info` failed: {probe.stderr.strip().splitlines()[-1:]}")
    return "no container engine: " + "; ".join(reasons)


def _environment(name: str) -> dict[str, str]:
    if name != "podman" or "CONTAINERS_CONF" in os.environ:
        return {}
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    conf = CACHE_DIR / "containers.conf"
    if not conf.exists() or conf.read_text() != PODMAN_CONF:
        conf.write_text(PODMAN_CONF)
    return {"CONTAINERS_CONF": str(conf)}


def missing_network_dns(engine: Engine) -> str | None:
    """Why container names would not resolve on the suite's networks, or None if they will.

    Pods reach PostgreSQL, Redis and the API server by Service name. On podman's CNI
    backend only the ``dnsname`` plugin answers for those names; without it every pod
    waits for its database until it times out, which says nothing of the cause.
    """
    if not engine.is_podman or _network_backend(engine) != "cni":
        return None
    plugin_dirs = _cni_plugin_dirs(engine)
    if any(os.access(Path(folder, "dnsname"), os.X_OK) for folder in plugin_dirs):
        return None
    return (
        "podman's CNI networks resolve no container names without the dnsname plugin, and"
        f" none of {', '.join(plugin_dirs)} holds it: install {DNSNAME_PACKAGE}"
    )


def _network_backend(engine: Engine) -> str:
    probe = engine.run("info", "--format", "{{.Host.NetworkBackend}}", check=False, timeout=60)
    # podman 3 has only CNI, and no such field to report it.
    return probe.stdout.strip() if probe.returncode == 0 and probe.stdout.strip() else "cni"


def _cni_plugin_dirs(engine: Engine) -> tuple[str, ...]:
    # With CONTAINERS_CONF set podman reads that file alone, over its built-in defaults.
    conf = engine.env.get("CONTAINERS_CONF") or os.environ.get("CONTAINERS_CONF")
    if not conf or not Path(conf).is_file():
        return CNI_PLUGIN_DIRS
    network = tomllib.loads(Path(conf).read_text()).get("network", {})
    return tuple(network.get("cni_plugin_dirs", CNI_PLUGIN_DIRS))
