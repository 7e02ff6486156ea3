"""Probes as the kubelet runs them: exec in the container, HTTP GET or TCP to the pod's IP.

``wait_until_passes`` is readiness and startup (poll until the probe passes, or fail with
the container's log); ``liveness_failure`` waits out the initial delay and allows the
failure threshold, as the kubelet does before it restarts a container.
"""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request

from pods import Object, Pod, PodFailedError


def wait_until_passes(pod: Pod, container: Object, kind: str, deadline: float) -> None:
    """Poll the container's ``kind`` probe (readinessProbe, startupProbe) until it passes."""
    probe = container.get(kind)
    if not probe:
        return
    failure: str | None = "not run yet"
    while time.monotonic() < deadline:
        if not pod.is_running(container["name"]):
            raise PodFailedError(
                f"{pod.name}/{container['name']} stopped before its {kind} passed; "
                f"its log ends:\n{pod.logs(container['name'])}"
            )
        failure = probe_failure(pod, container, probe)
        if failure is None:
            return
        time.sleep(1)
    raise PodFailedError(
        f"{pod.name}/{container['name']}: {kind} never passed ({failure}); "
        f"its log ends:\n{pod.logs(container['name'])}"
    )


def liveness_failure(pod: Pod, container: Object) -> str | None:
    """None when the liveness probe passes within its failure threshold, else the failure."""
    probe = container.get("livenessProbe")
    if not probe:
        return None
    started = pod.started.get(container["name"], time.monotonic())
    time.sleep(max(0.0, started + probe.get("initialDelaySeconds", 0) - time.monotonic()))
    failure: str | None = None
    for _ in range(int(probe.get("failureThreshold", 3))):
        failure = probe_failure(pod, container, probe)
        if failure is None:
            return None
        time.sleep(min(float(probe.get("periodSeconds", 10)), 5))
    return failure


def probe_failure(pod: Pod, container: Object, probe: Object) -> str | None:
    """Run one probe as the kubelet would; None when it passes, else what failed."""
    timeout = float(probe.get("timeoutSeconds", 1))
    if "exec" in probe:
        code, output = pod.exec(container["name"], probe["exec"]["command"], timeout=timeout + 5)
        return None if code == 0 else f"exec exited {code}: {output[-300:]}"
    if "httpGet" in probe:
        return _http_probe(pod, container, probe["httpGet"], timeout)
    if "tcpSocket" in probe:
        port = container_port(container, probe["tcpSocket"]["port"])
        try:
            socket.create_connection((pod.ip, port), timeout=timeout).close()
        except OSError as error:
            return f"tcp {pod.ip}:{port}: {error}"
        return None
    raise PodFailedError(f"{pod.name}: probe {probe} is not emulated")


def _http_probe(pod: Pod, container: Object, get: Object, timeout: float) -> str | None:
    port = container_port(container, get["port"])
    scheme = get.get("scheme", "HTTP").lower()
    url = f"{scheme}://{pod.ip}:{port}{get.get('path', '/')}"
    headers = {header["name"]: header["value"] for header in get.get("httpHeaders", [])}
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status = int(response.status)
    except urllib.error.HTTPError as error:
        status = error.code
    except OSError as error:
        return f"GET {url}: {error}"
    return None if 200 <= status < 400 else f"GET {url}: HTTP {status}"


def container_port(container: Object, port: int | str) -> int:
    """A probe's port: a number, or the name of one of the container's ports."""
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    for declared in container.get("ports", []):
        if declared.get("name") == port:
            return int(declared["containerPort"])
    raise PodFailedError(f"container {container['name']} declares no port named {port!r}")
