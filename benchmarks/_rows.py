"""The rows ``overhead.py`` compares, and the server resources each one needs.

Four configurations of one Celery app: ``bare`` (no result kept), ``tracked`` (beatkeeper's
``tracking.install``), and Celery's own result backends with ``task_track_started`` (every
run stored as STARTED, then SUCCESS): ``database_backend`` (SQLAlchemy over psycopg, in a
throwaway database of the same PostgreSQL) and ``redis_backend`` (another database of the
same Redis). ``summary`` turns measured rounds into medians, ratios and the verdict; it is
pure, so the unit tests check it without servers.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psutil
import redis
from celery import Celery
from sqlalchemy import create_engine, make_url, text

ROWS = ("bare", "tracked", "database_backend", "redis_backend")
GOAL = 0.85
"""Tracking keeps at least this share of bare Celery's throughput."""


@contextmanager
def celery_database(database_url: str, name: str) -> Iterator[str]:
    """A throwaway database ``name`` holding Celery's result tables: its ``db+`` URL."""
    admin = create_engine(make_url(database_url).set(drivername="postgresql+psycopg"))
    admin = admin.execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as db:
        db.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(database_url).set(drivername="postgresql+psycopg", database=name)
    backend_url = "db+" + url.render_as_string(hide_password=False)
    try:
        _create_result_tables(backend_url)
        yield backend_url
    finally:
        with admin.connect() as db:
            db.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _create_result_tables(backend_url: str) -> None:
    """Before the workers start: two pool processes creating them at once would collide."""
    app = Celery("bench-tables", backend=backend_url, set_as_current=False)
    session = app.backend.ResultSession()
    session.close()


def redis_backend_url(broker_url: str, database: int | None) -> str:
    """Redis database ``database`` (default: the one after the broker's) of the broker's server."""
    url = urlsplit(broker_url)
    current = int(url.path.strip("/") or 0)
    chosen = (current + 1) % 16 if database is None else database
    return urlunsplit(url._replace(path=f"/{chosen}"))


def forget_results(backend_url: str, task_ids: list[str]) -> None:
    """Delete the result keys a ``redis_backend`` round wrote, and only those."""
    client = redis.Redis.from_url(backend_url)
    try:
        for start in range(0, len(task_ids), 1000):
            keys = [f"celery-task-meta-{task_id}" for task_id in task_ids[start : start + 1000]]
            client.delete(*keys)
    finally:
        client.close()


def redis_server(broker_url: str) -> psutil.Process | None:
    """The Redis server process, when it runs on this machine and can be read."""
    client = redis.Redis.from_url(broker_url)
    try:
        pid = int(client.info("server")["process_id"])
        server = psutil.Process(pid)
        server.cpu_times()
    except (psutil.Error, redis.RedisError, KeyError):
        return None
    finally:
        client.close()
    return server


def summary(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians per row, ratios to bare, and whether tracking meets the goal."""
    rows: dict[str, dict[str, Any]] = {}
    for row in ROWS:
        measured = [r for r in rounds if r["row"] == row]
        if not measured:
            continue
        cpu_parts = sorted({part for r in measured for part in r["cpu_ms_per_task"]})
        cpu = {
            part: round(statistics.median(r["cpu_ms_per_task"].get(part, 0.0) for r in measured), 3)
            for part in cpu_parts
        }
        rows[row] = {
            "per_second": round(statistics.median(r["per_second"] for r in measured), 1),
            "cpu_ms_per_task": cpu,
        }
    bare = rows["bare"]["per_second"]
    bare_cpu = _workload_cpu(rows["bare"])
    for figures in rows.values():
        figures["ratio_to_bare"] = round(figures["per_second"] / bare, 3)
        figures["cpu_ratio_to_bare"] = round(_workload_cpu(figures) / bare_cpu, 3)
    return {"rows": rows, "goal": _verdict(rows)}


def _workload_cpu(figures: dict[str, Any]) -> float:
    """Worker plus database CPU: what the row itself costs (Redis is shared, see README)."""
    cpu = figures["cpu_ms_per_task"]
    return float(cpu.get("worker", 0.0) + cpu.get("database", 0.0))


def _verdict(rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    tracked = rows.get("tracked", {}).get("per_second", 0.0)
    verdict: dict[str, Any] = {
        "tracked_at_least_times_bare": GOAL,
        "tracked_ratio_to_bare": rows.get("tracked", {}).get("ratio_to_bare"),
        "within_goal_of_bare": bool(tracked) and rows["tracked"]["ratio_to_bare"] >= GOAL,
    }
    for backend in ("database_backend", "redis_backend"):
        if backend in rows:
            verdict[f"ahead_of_{backend}"] = tracked > rows[backend]["per_second"]
    checks = [value for key, value in verdict.items() if key.startswith(("within", "ahead"))]
    verdict["met"] = all(checks)
    return verdict
