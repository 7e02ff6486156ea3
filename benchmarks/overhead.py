"""What run tracking costs a worker: no-op tasks per second, tracked vs bare Celery (JSON).

Both sides use the same user app, broker, pool and concurrency in the same run; only the
one line differs (``tracking.install(app)``, and the messages carry the ``beatkeeper_*``
headers with a run row behind each). Each round pre-publishes ``--messages`` no-op tasks on
a fresh queue, then starts a ``celery worker`` on it and measures from the first "received"
to the last "succeeded" line of its log (written by Celery on both sides alike), so worker
start-up and publishing are not counted. Rounds alternate bare/tracked; the medians are
compared. The goal: tracking costs at most 15% of bare throughput.

Throughput on a shared machine moves with whatever else runs there, so each round also
reports the CPU time the round itself used per task (``cpu_ms_per_task``): the worker's
processes and, when tracked, the PostgreSQL backends serving them (found by their client
ports). Those figures do not depend on neighbours.

    python benchmarks/overhead.py [--messages 5000] [--rounds 3] [--concurrency 2]

Servers: as every benchmark finds them (``_servers``: ``BEATKEEPER_BENCH_*`` or
``BEATKEEPER_*`` URLs, else PostgreSQL and Redis on 127.0.0.1, else embedded ones). The
database schema is a throwaway ``bk_bench_<random>``, migrated and dropped.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import _servers
import celery
import psutil
from beatkeeper_worker.tracking import message_headers
from celery import Celery
from sqlalchemy import Engine, text

from beatkeeper.settings import Settings, mask_url
from beatkeeper.store import make_engine, migrate

GOAL = 0.15
TASK = "bench.noop"

APP = f'''
import os
from celery import Celery

app = Celery("bench", broker=os.environ["BEATKEEPER_BROKER_URL"])
app.conf.update(
    task_serializer="json", accept_content=["json"], worker_prefetch_multiplier=1,
    task_acks_late=True, task_reject_on_worker_lost=True,
    broker_connection_retry_on_startup=True,
)
if os.environ["BENCH_TRACKING"] == "1":
    from beatkeeper_worker import tracking
    tracking.install(app)


@app.task(name="{TASK}")
def noop():
    return None
'''

_LINE = re.compile(
    r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}): \w+/[\w-]+\] Task \S+ (received|succeeded)"
)


def main() -> None:
    options = _arguments()
    database, broker = _servers.servers(Path(tempfile.mkdtemp(prefix="bk-bench-")))
    schema = f"bk_bench_{secrets.token_hex(3)}"
    settings = Settings(database_url=database, broker_url=broker, db_schema=schema)
    engine = make_engine(settings, application_name="beatkeeper-bench")
    migrate.upgrade(engine)
    client = Celery("bench-client", broker=settings.require_broker_url(), set_as_current=False)
    client.conf.update(task_serializer="json", accept_content=["json"])
    rounds: list[dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory() as folder:
            (Path(folder) / "benchapp.py").write_text(APP)
            for index in range(options.rounds):
                for tracking in (False, True):
                    measured = _round(folder, settings, engine, client, options, tracking=tracking)
                    rounds.append({"round": index + 1, "tracking": tracking, **measured})
                    print(f"round {index + 1} {'tracked' if tracking else 'bare'}: {measured}",
                          file=sys.stderr)  # fmt: skip
    finally:
        engine.dispose()
        with engine.begin() as db:
            db.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()
    bare = statistics.median(r["per_second"] for r in rounds if not r["tracking"])
    tracked = statistics.median(r["per_second"] for r in rounds if r["tracking"])
    overhead = 1 - tracked / bare
    bare_cpu = statistics.median(
        sum(r["cpu_ms_per_task"].values()) for r in rounds if not r["tracking"]
    )
    tracked_cpu = statistics.median(
        sum(r["cpu_ms_per_task"].values()) for r in rounds if r["tracking"]
    )
    print(json.dumps({
        "benchmark": "tracking overhead",
        "messages_per_round": options.messages,
        "pool": "prefork",
        "concurrency": options.concurrency,
        "broker": mask_url(settings.require_broker_url()),
        "celery": celery.__version__,
        "bare_per_second": round(bare, 1),
        "tracked_per_second": round(tracked, 1),
        "overhead": round(overhead, 4),
        "goal": GOAL,
        "met": overhead <= GOAL,
        "bare_cpu_ms_per_task": round(bare_cpu, 3),
        "tracked_cpu_ms_per_task": round(tracked_cpu, 3),
        "cpu_overhead": round(tracked_cpu / bare_cpu - 1, 4),
        "rounds": rounds,
    }, indent=2))  # fmt: skip


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=2)
    return parser.parse_args()


def _round(
    folder: str,
    settings: Settings,
    engine: Engine,
    client: Celery,
    options: argparse.Namespace,
    *,
    tracking: bool,
) -> dict[str, Any]:
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    if tracking:
        _publish_runs(engine, client, queue, options.messages)
    else:
        _publish(client, queue, [(str(uuid.uuid4()), None) for _ in range(options.messages)])
    log = Path(folder) / f"{queue}.log"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([folder, *sys.path]),
        "BENCH_TRACKING": "1" if tracking else "0",
        "BEATKEEPER_DATABASE_URL": settings.require_database_url(),
        "BEATKEEPER_DB_SCHEMA": settings.db_schema,
        "BEATKEEPER_BROKER_URL": settings.require_broker_url(),
    }
    command = [
        sys.executable, "-m", "celery", "-A", "benchapp", "worker", "--pool", "prefork",
        "-c", str(options.concurrency), "-Q", queue, "-n", f"{queue}@%h", "--loglevel", "INFO",
        "--without-gossip", "--without-mingle", "--without-heartbeat",
    ]  # fmt: skip
    with log.open("wb") as out:
        worker = subprocess.Popen(command, env=env, cwd=folder, stdout=out, stderr=out)
    try:
        return _drained(log, options.messages, worker, engine)
    finally:
        worker.terminate()
        worker.wait(timeout=60)
        client.connection_for_write().default_channel.queue_delete(queue)


def _publish_runs(engine: Engine, client: Celery, queue: str, count: int) -> None:
    """Beat's part: a schedule, ``count`` enqueued runs, one message per run."""
    schedule_id = uuid.uuid4()
    name = f"noop-{schedule_id.hex[:8]}"
    now = datetime.now(UTC)
    with engine.begin() as db:
        db.execute(
            text(
                "INSERT INTO schedules (id, namespace, name, generation, spec, spec_hash, task,"
                " zone, trigger) VALUES (:id, 'bench', :name, 1, '{}', 'h', :task, 'UTC', 'x')"
            ),
            {"id": schedule_id, "name": name, "task": TASK},
        )
        run_ids = db.execute(
            text(
                "INSERT INTO runs (schedule_id, planned_at, due_at, task, state, enqueued_at)"
                " SELECT :schedule, :now + n * interval '1 microsecond', :now, :task,"
                " 'enqueued', :now FROM generate_series(1, :count) AS n RETURNING id"
            ),
            {"schedule": schedule_id, "now": now, "task": TASK, "count": count},
        ).scalars()
        headers = message_headers(
            schedule=f"bench/{name}", schedule_id=schedule_id, planned_at=now, attempt=1,
            max_attempts=1,
        )  # fmt: skip
        _publish(client, queue, [(str(run_id), headers) for run_id in run_ids])


def _publish(client: Celery, queue: str, messages: list[tuple[str, Any]]) -> None:
    with client.producer_or_acquire() as producer:
        for task_id, headers in messages:
            client.send_task(TASK, task_id=task_id, headers=headers, queue=queue, producer=producer)


def _drained(
    log: Path, count: int, worker: subprocess.Popen[bytes], engine: Engine
) -> dict[str, Any]:
    deadline = time.monotonic() + 60 + count / 50
    processes: list[psutil.Process] = []
    before = 0.0
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            raise SystemExit(f"the worker exited:\n{log.read_text()}")
        if not processes and "ready." in log.read_text(errors="replace"):
            main_process = psutil.Process(worker.pid)
            processes = [main_process, *main_process.children(recursive=True)]
            before = _cpu(processes)
        received, succeeded = _times(log)
        if len(succeeded) >= count:
            backends = _backends_of(engine, processes)
            return {
                "per_second": round((count - 1) / (max(succeeded) - min(received)), 1),
                "cpu_ms_per_task": {
                    "worker": round((_cpu(processes) - before) / count * 1000, 3),
                    "database": round(_cpu(backends) / count * 1000, 3),
                },
            }
        time.sleep(0.2)
    raise SystemExit(f"the worker did not finish {count} tasks in time:\n{log.read_text()[-3000:]}")


def _cpu(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def _backends_of(engine: Engine, processes: list[psutil.Process]) -> list[psutil.Process]:
    """The PostgreSQL backends serving the worker's TCP connections (none over a socket)."""
    ports = set()
    for process in processes:
        try:
            ports.update(c.laddr.port for c in process.net_connections("tcp") if c.raddr)
        except psutil.Error:
            continue
    if not ports:
        return []
    with engine.connect() as db:
        pids = db.execute(
            text("SELECT pid FROM pg_stat_activity WHERE client_port = ANY(:ports)"),
            {"ports": sorted(ports)},
        ).scalars()
        found = []
        for pid in pids:
            try:
                found.append(psutil.Process(pid))
            except psutil.NoSuchProcess:
                continue
        return found


def _times(log: Path) -> tuple[list[float], list[float]]:
    received: list[float] = []
    succeeded: list[float] = []
    for line in log.read_text(errors="replace").splitlines():
        match = _LINE.match(line)
        if match:
            moment = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            (received if match.group(2) == "received" else succeeded).append(moment)
    return received, succeeded


if __name__ == "__main__":
    main()
