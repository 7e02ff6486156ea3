"""Readiness and metrics on ``BEATKEEPER_METRICS_PORT``: ``/readyz``, ``/healthz``, ``/metrics``.

Liveness is kopf's own endpoint (``/healthz`` on port 8080, given to ``kopf.run``), which
fails when kopf's loop is stuck. Readiness here says the operator finished starting and its
last database access worked: a pod that cannot reach PostgreSQL is alive (restarting it
would not help) but not ready. This module only serves HTTP; it decides nothing.
"""

from __future__ import annotations

import asyncio

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from beatkeeper_operator.runtime import Runtime

__all__ = ["app", "serve"]


def app(runtime: Runtime) -> web.Application:
    async def readyz(_: web.Request) -> web.Response:
        if runtime.started and runtime.database_ok:
            return web.Response(text="ok\n")
        return web.Response(status=503, text="not ready: the database is unreachable\n")

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    application = web.Application()
    application.router.add_get("/readyz", readyz)
    application.router.add_get("/healthz", healthz)
    application.router.add_get("/metrics", metrics)
    return application


async def serve(runtime: Runtime, *, port: int, host: str = "0.0.0.0") -> None:  # noqa: S104
    """Serve until cancelled."""
    runner = web.AppRunner(app(runtime), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
