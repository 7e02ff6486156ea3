"""Due time → task body start, through Beat, the broker and a worker (prints JSON).

Applies ``--schedules`` interval Schedules of ``beatkeeper.noop`` whose start times are
spread evenly over one ``--interval``, so runs fall due at a steady rate (schedules /
interval per second), then runs the real data plane for ``--seconds``: ``celery beat`` with
beatkeeper's ``DatabaseScheduler`` and a prefork worker of beatkeeper's app. Every run
records ``due_at`` (Beat's target), ``enqueued_at`` (published) and ``started_at`` (the
worker's claim, just before the body starts), so the lag of each run is read back from
the runs table: ``started_at - due_at``. Runs due in the first ``--warm-up`` seconds are
left out. Goals: p50 ≤ 20 ms, p99 ≤ 100 ms.

    python benchmarks/end_to_end.py [--schedules 300] [--interval 10] [--seconds 60]

Servers: as every benchmark finds them (``_servers``: ``BEATKEEPER_BENCH_*`` or
``BEATKEEPER_*`` URLs, else PostgreSQL and Redis on 127.0.0.1, else embedded ones). The
database schema is a throwaway ``bk_e2e_<random>``, migrated and dropped.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import _servers
from sqlalchemy import Engine, text

from beatkeeper.settings import Settings, mask_url
from beatkeeper.spec import validate_manifest
from beatkeeper.store import make_engine, migrate
from beatkeeper.store.schedules import apply_schedule

GOALS_MS = {"p50": 20.0, "p99": 100.0}

_LAGS = text("""
    SELECT extract(epoch FROM started_at - due_at) * 1000 AS lag,
           extract(epoch FROM enqueued_at - due_at) * 1000 AS to_broker
    FROM runs WHERE due_at >= :since AND due_at < :until AND started_at IS NOT NULL
    ORDER BY lag
""")
_STATES = text(
    "SELECT state, count(*) FROM runs WHERE due_at >= :since AND due_at < :until GROUP BY state"
)


def main() -> None:
    options = _arguments()
    database, broker = _servers.servers(Path(tempfile.mkdtemp(prefix="bk-bench-")))
    settings = Settings(
        database_url=database, broker_url=broker, db_schema=f"bk_e2e_{secrets.token_hex(3)}"
    )
    engine = make_engine(settings, application_name="beatkeeper-bench")
    migrate.upgrade(engine)
    try:
        start = _apply_schedules(engine, options)
        with tempfile.TemporaryDirectory() as folder:
            _run_data_plane(Path(folder), settings, options, until=start + options.seconds)
        since = datetime.fromtimestamp(start + options.warm_up, UTC)
        until = datetime.fromtimestamp(start + options.seconds - 2, UTC)
        result = _measure(engine, since, until)
    finally:
        engine.dispose()
        with engine.begin() as db:
            db.execute(text(f'DROP SCHEMA IF EXISTS "{settings.db_schema}" CASCADE'))
        engine.dispose()
    result.update(
        benchmark="due time to task start",
        schedules=options.schedules,
        interval_seconds=options.interval,
        due_per_second=round(options.schedules / options.interval, 1),
        measured_seconds=options.seconds - options.warm_up - 2,
        worker=f"prefork -c {options.concurrency}",
        broker=mask_url(settings.require_broker_url()),
        goals_ms=GOALS_MS,
    )
    result["met"] = all(result.get(k, float("inf")) <= v for k, v in GOALS_MS.items())
    print(json.dumps(result, indent=2))


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schedules", type=int, default=300)
    parser.add_argument("--interval", type=int, default=10, help="seconds between runs")
    parser.add_argument("--seconds", type=int, default=60, help="how long to run")
    parser.add_argument("--warm-up", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=2)
    return parser.parse_args()


def _apply_schedules(engine: Engine, options: argparse.Namespace) -> float:
    """Spread the schedules' first runs over one interval from a few seconds ahead."""
    now = datetime.now(UTC)
    first = now.replace(microsecond=0) + timedelta(seconds=5)
    step = timedelta(seconds=options.interval) / options.schedules
    with engine.begin() as db:
        for index in range(options.schedules):
            document = {
                "apiVersion": "beatkeeper.io/v1alpha1",
                "kind": "Schedule",
                "metadata": {"name": f"e2e-{index}", "namespace": "bench"},
                "spec": {
                    "task": "beatkeeper.noop",
                    "interval": f"{options.interval}s",
                    "startTime": (first + index * step).isoformat(),
                },
            }
            apply_schedule(db, validate_manifest(document, now=now).manifest, now=now)
    return first.timestamp()


def _run_data_plane(
    folder: Path, settings: Settings, options: argparse.Namespace, *, until: float
) -> None:
    env = {
        **os.environ,
        "BEATKEEPER_DATABASE_URL": settings.require_database_url(),
        "BEATKEEPER_BROKER_URL": settings.require_broker_url(),
        "BEATKEEPER_DB_SCHEMA": settings.db_schema,
    }
    base = [sys.executable, "-m", "celery", "-A", "beatkeeper_worker"]
    commands = {
        "worker": [*base, "worker", "--pool", "prefork", "-c", str(options.concurrency),
                   "--loglevel", "WARNING", "--without-gossip", "--without-mingle",
                   "--without-heartbeat", "-n", f"e2e-{secrets.token_hex(3)}@%h"],
        "beat": [*base, "beat", "-S", "beatkeeper_worker.beat:DatabaseScheduler",
                 "--loglevel", "WARNING"],
    }  # fmt: skip
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for name, command in commands.items():
            with (folder / f"{name}.log").open("wb") as log:
                processes.append(subprocess.Popen(command, env=env, stdout=log, stderr=log))
        while time.time() < until:  # a benchmark's measuring window, not a condition
            if any(process.poll() is not None for process in processes):
                logs = "\n".join(p.read_text()[-2000:] for p in folder.glob("*.log"))
                raise SystemExit(f"beat or the worker exited early:\n{logs}")
            time.sleep(0.5)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=60)


def _measure(engine: Engine, since: datetime, until: datetime) -> dict[str, Any]:
    window = {"since": since, "until": until}
    with engine.connect() as db:
        rows = db.execute(_LAGS, window).all()
        states = {row[0]: row[1] for row in db.execute(_STATES, window)}
    lags = [float(row.lag) for row in rows]
    to_broker = sorted(float(row.to_broker) for row in rows)
    if not lags:
        return {"runs_started": 0, "states": states}
    return {
        "runs_started": len(lags),
        "states": states,
        "p50": _percentile(lags, 50),
        "p90": _percentile(lags, 90),
        "p99": _percentile(lags, 99),
        "max": round(lags[-1], 2),
        "due_to_published_p50": _percentile(to_broker, 50),
        "due_to_published_p99": _percentile(to_broker, 99),
    }


def _percentile(ordered: list[float], percent: float) -> float:
    index = min(len(ordered) - 1, max(0, round(percent / 100 * len(ordered)) - 1))
    return round(ordered[index], 2)


if __name__ == "__main__":
    main()
