"""``/metrics``, ``/healthz`` and ``/readyz`` on ``BEATKEEPER_METRICS_PORT``, from a daemon thread.

A component registers checks: callables returning ``(ok, reason)``. ``/healthz`` (liveness:
restart me) answers 200 when every liveness check passes, ``/readyz`` (readiness: send me no
work) when every liveness and readiness check does; otherwise 503 with one ``name: reason``
line per failing check. A check that raises fails with the exception as its reason. Checks
run on the server's threads, never on the component's own loop, so they must be cheap and
bounded (``Heartbeat`` for "is my loop turning", ``CachedCheck`` for a round trip to a
server at most every few seconds).

The server speaks plain ``http.server``; it must not import Celery, SQLAlchemy or kopf.
"""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from beatkeeper.observability import metrics

__all__ = ["CachedCheck", "Check", "HealthServer", "Heartbeat", "evaluate"]

Check = Callable[[], tuple[bool, str]]
"""A health check: ``(True, "")`` when healthy, else ``(False, "why, in a few words")``."""


def evaluate(checks: Mapping[str, Check]) -> tuple[int, str]:
    """The HTTP status and body for ``checks``: 200 ``ok`` or 503 with the failing reasons."""
    failures = []
    for name, check in checks.items():
        try:
            ok, reason = check()
        except Exception as error:  # noqa: BLE001 (a broken check is a failed check)
            ok, reason = False, f"check raised {type(error).__name__}: {error}"
        if not ok:
            failures.append(f"{name}: {reason}")
    if failures:
        return 503, "\n".join(failures) + "\n"
    return 200, "ok\n"


class Heartbeat:
    """A loop calls ``beat()`` each turn; the check fails once it has not for ``max_age``."""

    def __init__(self, what: str, *, max_age: float, clock: Callable[[], float] = time.monotonic):
        self._what = what
        self.max_age = max_age
        self._clock = clock
        self._last = clock()

    def beat(self) -> None:
        self._last = self._clock()

    def __call__(self) -> tuple[bool, str]:
        age = self._clock() - self._last
        if age > self.max_age:
            return False, f"{self._what} has not turned for {age:.0f}s (limit {self.max_age:.0f}s)"
        return True, ""


class CachedCheck:
    """Runs ``check`` at most every ``every`` seconds and answers the last result meanwhile."""

    def __init__(
        self, check: Check, *, every: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._check = check
        self._every = every
        self._clock = clock
        self._lock = threading.Lock()
        self._result: tuple[bool, str] | None = None
        self._at = 0.0

    def __call__(self) -> tuple[bool, str]:
        with self._lock:  # one round trip at a time, however many probes arrive at once
            if self._result is None or self._clock() - self._at >= self._every:
                try:
                    self._result = self._check()
                except Exception as error:  # noqa: BLE001 (reported as the reason)
                    self._result = (False, f"{type(error).__name__}: {error}")
                self._at = self._clock()
            return self._result


class HealthServer:
    """The probe and metrics endpoints of one process; ``port=0`` picks a free port."""

    def __init__(
        self,
        *,
        port: int,
        liveness: Mapping[str, Check],
        readiness: Mapping[str, Check],
        host: str = "",  # every interface: the kubelet probes the pod's IP
    ) -> None:
        self.liveness = dict(liveness)
        self.readiness = dict(readiness)
        server = self

        class Handler(_Handler):
            owner = server

        try:
            self._http = http.server.ThreadingHTTPServer((host, port), Handler)
        except OSError as error:
            # SystemExit: one line naming the setting, not a traceback.
            raise SystemExit(
                f"beatkeeper cannot serve /metrics, /healthz and /readyz on port {port} "
                f"(BEATKEEPER_METRICS_PORT): {error.strerror or error}"
            ) from None
        self._http.daemon_threads = True
        self._thread = threading.Thread(
            target=self._http.serve_forever,
            kwargs={"poll_interval": 0.1},  # how long stop() waits for the thread
            name="beatkeeper-health",
            daemon=True,
        )

    @property
    def port(self) -> int:
        return int(self._http.server_address[1])

    def start(self) -> HealthServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()

    def respond(self, path: str) -> tuple[int, str, bytes]:
        """Status, content type and body for a GET of ``path``."""
        if path == "/metrics":
            body, content_type = metrics.exposition()
            return 200, content_type, body
        if path == "/healthz":
            status, text = evaluate(self.liveness)
        elif path == "/readyz":
            status, text = evaluate({**self.liveness, **self.readiness})
        else:
            status, text = 404, "not found: try /metrics, /healthz or /readyz\n"
        return status, "text/plain; charset=utf-8", text.encode()


class _Handler(http.server.BaseHTTPRequestHandler):
    owner: HealthServer

    def do_GET(self) -> None:
        status, content_type, body = self.owner.respond(self.path.partition("?")[0])
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # a probe every few seconds is not worth a log line
