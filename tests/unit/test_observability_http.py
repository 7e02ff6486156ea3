"""The probe server: how checks become 200 or 503, and what it serves over real HTTP."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from beatkeeper.observability import metrics
from beatkeeper.observability.http import CachedCheck, HealthServer, Heartbeat, evaluate


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def ok() -> tuple[bool, str]:
    return True, ""


def down() -> tuple[bool, str]:
    return False, "cannot reach PostgreSQL"


def broken() -> tuple[bool, str]:
    raise RuntimeError("oops")


def test_all_checks_passing_is_200_ok() -> None:
    assert evaluate({"a": ok, "b": ok}) == (200, "ok\n")


def test_no_checks_is_200() -> None:
    assert evaluate({}) == (200, "ok\n")


def test_each_failing_check_is_one_line_with_its_reason() -> None:
    status, body = evaluate({"loop": ok, "database": down, "broker": down})
    assert status == 503
    assert body == "database: cannot reach PostgreSQL\nbroker: cannot reach PostgreSQL\n"


def test_a_check_that_raises_fails_with_the_exception_as_reason() -> None:
    assert evaluate({"x": broken}) == (503, "x: check raised RuntimeError: oops\n")


def test_heartbeat_fails_once_the_loop_has_not_turned_for_max_age() -> None:
    clock = Clock()
    heartbeat = Heartbeat("the loop", max_age=60, clock=clock)
    clock.now += 60
    assert heartbeat() == (True, "")
    clock.now += 1
    assert heartbeat() == (False, "the loop has not turned for 61s (limit 60s)")
    heartbeat.beat()
    assert heartbeat() == (True, "")


def test_cached_check_asks_at_most_once_per_period() -> None:
    clock, calls = Clock(), []

    def counted() -> tuple[bool, str]:
        calls.append(clock.now)
        return len(calls) % 2 == 1, f"call {len(calls)}"

    check = CachedCheck(counted, every=10, clock=clock)
    assert check() == (True, "call 1")
    clock.now += 9.9
    assert check() == (True, "call 1")
    clock.now += 0.1
    assert check() == (False, "call 2")
    assert len(calls) == 2


def test_cached_check_reports_an_exception_as_a_failure() -> None:
    assert CachedCheck(broken, every=10)() == (False, "RuntimeError: oops")


@pytest.fixture
def server() -> Iterator[HealthServer]:
    started = HealthServer(port=0, liveness={"loop": ok}, readiness={"database": down}).start()
    yield started
    started.stop()


def fetch(server: HealthServer, path: str) -> tuple[int, str, str]:
    url = f"http://127.0.0.1:{server.port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read().decode()


def test_server_answers_liveness_and_readiness_separately(server: HealthServer) -> None:
    assert fetch(server, "/healthz")[::2] == (200, "ok\n")
    assert fetch(server, "/readyz")[::2] == (503, "database: cannot reach PostgreSQL\n")


def test_readiness_includes_liveness(server: HealthServer) -> None:
    server.liveness["loop"] = broken
    server.readiness["database"] = ok
    status, _, body = fetch(server, "/readyz?verbose")
    assert (status, body) == (503, "loop: check raised RuntimeError: oops\n")


def test_server_serves_prometheus_text(server: HealthServer) -> None:
    metrics.TICKS.inc()
    status, content_type, body = fetch(server, "/metrics")
    assert status == 200
    assert content_type.startswith("text/plain; version=")
    assert "# TYPE beatkeeper_ticks_total counter" in body


def test_unknown_paths_are_404(server: HealthServer) -> None:
    assert fetch(server, "/")[0] == 404


def test_a_port_in_use_is_one_line_naming_the_setting(server: HealthServer) -> None:
    with pytest.raises(SystemExit, match=rf"on port {server.port} \(BEATKEEPER_METRICS_PORT\)"):
        HealthServer(port=server.port, liveness={}, readiness={})
