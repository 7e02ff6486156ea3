"""The operator's /metrics, scraped over HTTP: reconciles, errors and what is still pending.

Counters live in the process-wide registry and other tests add to them, so each test reads
the counters before and after what it does and compares the difference.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from beatkeeper_operator import health
from beatkeeper_operator.progress import Progress
from harness import create, eventually, manifest, ready, ready_becomes
from prometheus_client.parser import text_string_to_metric_families

Scrape = Callable[[], Awaitable[dict[tuple[str, tuple[tuple[str, str], ...]], float]]]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def scrape_operator(
    start_operator: Callable[..., Awaitable[Any]],
) -> AsyncIterator[Callable[..., Awaitable[Scrape]]]:
    """Start the operator and serve its /metrics as deployed (health.serve on a port)."""
    servers: list[aiohttp.web.AppRunner] = []

    async def start(**options: Any) -> Scrape:
        handle = await start_operator(**options)
        await eventually(lambda: handle.runtime and handle.runtime.started, what="start-up")
        runner = aiohttp.web.AppRunner(health.app(handle.runtime))
        await runner.setup()
        port = _free_port()
        await aiohttp.web.TCPSite(runner, "127.0.0.1", port).start()
        servers.append(runner)

        async def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
            url = f"http://127.0.0.1:{port}/metrics"
            async with aiohttp.ClientSession() as session, session.get(url) as response:
                assert response.status == 200
                text = await response.text()
            return {
                (sample.name, tuple(sorted(sample.labels.items()))): sample.value
                for family in text_string_to_metric_families(text)
                for sample in family.samples
            }

        return scrape

    yield start
    for runner in servers:
        await runner.cleanup()


def _reconciles(samples: dict[Any, float], outcome: str) -> float:
    return samples.get(("beatkeeper_operator_reconciles_total", (("outcome", outcome),)), 0.0)


OLDEST = ("beatkeeper_operator_oldest_unreconciled_seconds", ())


async def test_reconciles_are_counted_by_outcome(cluster, scrape_operator) -> None:
    scrape = await scrape_operator()
    before = await scrape()
    await create(cluster, manifest("good"))
    await create(cluster, manifest("broken", cron="61 * * * *"))
    await eventually(lambda: ready(cluster, "team-a", "good")["reason"] == "Scheduled")
    await eventually(lambda: ready(cluster, "team-a", "broken")["reason"] == "InvalidSpec")
    after = await scrape()
    assert _reconciles(after, "Scheduled") - _reconciles(before, "Scheduled") >= 1
    assert _reconciles(after, "InvalidSpec") - _reconciles(before, "InvalidSpec") >= 1
    assert after[OLDEST] == 0.0


async def test_an_outage_shows_as_errors_and_an_ageing_unreconciled_schedule(
    cluster, scrape_operator, database_proxy
) -> None:
    proxy, through_proxy = database_proxy
    scrape = await scrape_operator(settings_=through_proxy)
    errors = ("beatkeeper_operator_errors_total", (("error", "DatabaseUnavailable"),))
    before = await scrape()

    proxy.cut()
    await create(cluster, manifest("during"))
    await ready_becomes(cluster, "team-a", "during", reason="DatabaseUnavailable")
    first = await scrape()
    assert first[errors] - before.get(errors, 0.0) >= 1
    assert first[OLDEST] > 0.0
    ageing = await _until(scrape, lambda samples: samples[OLDEST] > first[OLDEST])
    assert _reconciles(ageing, "DatabaseUnavailable") > _reconciles(before, "DatabaseUnavailable")

    proxy.restore()
    await ready_becomes(cluster, "team-a", "during", status="True", timeout=20)
    await _until(scrape, lambda samples: samples[OLDEST] == 0.0)


async def _until(scrape: Scrape, check: Callable[[dict[Any, float]], bool]) -> dict[Any, float]:
    """Scrape until ``check`` holds (at most 15 s)."""
    deadline = time.monotonic() + 15.0
    while not check(found := await scrape()):
        assert time.monotonic() < deadline, f"the metrics never matched: {found}"
        await asyncio.sleep(0.1)
    return found


def test_the_oldest_change_counts_from_its_first_attempt() -> None:
    progress = Progress()
    first = datetime.now(UTC) - timedelta(seconds=90)
    progress.failed("a", started=first.replace(tzinfo=None), error="DatabaseUnavailable")
    progress.failed("a", started=datetime.now(UTC), error="DatabaseUnavailable")  # a retry
    progress.failed("b", started=datetime.now(UTC) - timedelta(seconds=30), error="KeyError")
    assert 89 < progress.oldest_unreconciled_seconds() < 100
    progress.reconciled("a", outcome="Scheduled")
    assert 29 < progress.oldest_unreconciled_seconds() < 40
    progress.forgotten("b")
    assert progress.oldest_unreconciled_seconds() == 0.0
    # A reconcile still in progress (waiting for a thread or a connection) counts too.
    progress.began("c", started=datetime.now(UTC) - timedelta(seconds=10))
    assert 9 < progress.oldest_unreconciled_seconds() < 20
