"""What recording runs costs a worker: no-op tasks per second, four ways, side by side (JSON).

The rows (``_rows``): bare Celery; beatkeeper's tracking (``tracking.install(app)``, the
messages carrying the ``beatkeeper_*`` headers with a run row behind each); and Celery's own
result backends with ``task_track_started``: the SQLAlchemy database backend (a throwaway
database in the same PostgreSQL) and the Redis backend (another database of the same Redis).
Same app, broker, prefork pool and concurrency; only the row's configuration differs. Each
round runs every row once (the order rotating per round): ``--messages`` no-op tasks are
pre-published on a fresh queue, then a ``celery worker`` is started on it and measured from
the first "received" to the last "succeeded" line of its log (Celery's own, alike for every
row), so start-up and publishing are not counted. Medians of the rounds are compared. The
goal: tracking keeps at least 85% of bare throughput and beats both backends.

Throughput on a shared machine moves with whatever else runs there, so each round also
reports the CPU the row used per task (``cpu_ms_per_task``): ``worker`` (the worker's
processes), ``database`` (the PostgreSQL backends serving them, found by their client
ports; tracked and database rows) and ``redis`` (the whole Redis server over the round: it
serves the broker for every row and the results for one, and anything else using that
server adds to it, so compare it between rows of one run only).

    python benchmarks/overhead.py [--messages 5000] [--rounds 3] [--concurrency 2]
                                  [--prefetch-multiplier 1] [--rows bare,tracked,...]

Servers: as every benchmark finds them (``_servers``). beatkeeper's tables live in a
throwaway schema ``bk_bench_<random>``, Celery's result tables in a throwaway database
``bk_bench_celery_<random>``; both are dropped at the end, and the Redis result keys after
each round.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import _rows
import _servers
import celery
import psutil
from beatkeeper_worker.messages import run_headers
from celery import Celery
from sqlalchemy import Engine, text

from beatkeeper.settings import Settings, mask_url
from beatkeeper.store import make_engine, migrate

TASK = "bench.noop"

APP = f'''
import os
from celery import Celery

app = Celery("bench", broker=os.environ["BEATKEEPER_BROKER_URL"])
app.conf.update(
    task_serializer="json", accept_content=["json"],
    worker_prefetch_multiplier=int(os.environ["BENCH_PREFETCH_MULTIPLIER"]),
    task_acks_late=True, task_reject_on_worker_lost=True,
    broker_connection_retry_on_startup=True,
)
row = os.environ["BENCH_ROW"]
if row == "tracked":
    from beatkeeper_worker import tracking
    tracking.install(app)
elif row != "bare":
    app.conf.update(result_backend=os.environ["BENCH_RESULT_BACKEND"], task_track_started=True)


@app.task(name="{TASK}")
def noop():
    return None
'''

_LINE = re.compile(
    r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}): \w+/[\w-]+\] Task \S+ (received|succeeded)"
)


@dataclass(frozen=True)
class Bench:
    """What every round needs: the servers, the client publishing, the options."""

    folder: Path
    settings: Settings
    engine: Engine
    client: Celery
    backends: dict[str, str]  # row -> its result backend URL
    redis: psutil.Process | None
    options: argparse.Namespace


def main() -> None:
    options = _arguments()
    database, broker = _servers.servers(Path(tempfile.mkdtemp(prefix="bk-bench-")))
    token = secrets.token_hex(3)
    settings = Settings(database_url=database, broker_url=broker, db_schema=f"bk_bench_{token}")
    engine = make_engine(settings, application_name="beatkeeper-bench")
    migrate.upgrade(engine)
    client = Celery("bench-client", broker=broker, set_as_current=False)
    client.conf.update(task_serializer="json", accept_content=["json"])
    redis_results = _rows.redis_backend_url(broker, options.redis_result_db)
    rounds: list[dict[str, Any]] = []
    try:
        with (
            _rows.celery_database(database, f"bk_bench_celery_{token}") as database_results,
            tempfile.TemporaryDirectory() as folder,
        ):
            (Path(folder) / "benchapp.py").write_text(APP)
            backends = {"database_backend": database_results, "redis_backend": redis_results}
            redis_server = _rows.redis_server(broker)
            bench = Bench(Path(folder), settings, engine, client, backends, redis_server, options)
            for index in range(options.rounds):
                order = _rows.ROWS[index % 4 :] + _rows.ROWS[: index % 4]
                for row in (row for row in order if row in options.rows):
                    measured = _round(bench, row)
                    rounds.append({"round": index + 1, "row": row, **measured})
                    print(f"round {index + 1} {row}: {measured}", file=sys.stderr)
    finally:
        engine.dispose()
        with engine.begin() as db:
            db.execute(text(f'DROP SCHEMA IF EXISTS "{settings.db_schema}" CASCADE'))
        engine.dispose()
    print(json.dumps({
        "benchmark": "run recording: bare, tracked, Celery's database and Redis result backends",
        "messages_per_round": options.messages,
        "pool": "prefork",
        "concurrency": options.concurrency,
        "prefetch_multiplier": options.prefetch_multiplier,
        "broker": mask_url(broker),
        "redis_result_backend": mask_url(redis_results),
        "celery": celery.__version__,
        **_rows.summary(rounds),
        "rounds": rounds,
    }, indent=2))  # fmt: skip


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument(
        "--prefetch-multiplier",
        type=int,
        default=1,
        help="worker_prefetch_multiplier of every row (default 1: each pool process waits for "
        "the main process between tasks, so every millisecond a task takes counts; Celery's "
        "own default is 4)",
    )
    parser.add_argument(
        "--rows",
        type=_rows_of,
        default=_rows.ROWS,
        help="comma-separated subset of " + ",".join(_rows.ROWS) + " (bare is always measured)",
    )
    parser.add_argument(
        "--redis-result-db",
        type=int,
        default=None,
        help="Redis database of the Redis result backend (default: the broker's + 1)",
    )
    return parser.parse_args()


def _rows_of(text: str) -> tuple[str, ...]:
    wanted = {row.strip() for row in text.split(",") if row.strip()}
    unknown = wanted - set(_rows.ROWS)
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown row(s) {', '.join(sorted(unknown))}; the rows are {', '.join(_rows.ROWS)}"
        )
    return tuple(row for row in _rows.ROWS if row in wanted or row == "bare")


def _round(bench: Bench, row: str) -> dict[str, Any]:
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    if row == "tracked":
        task_ids = _publish_runs(bench, queue)
    else:
        task_ids = [str(uuid.uuid4()) for _ in range(bench.options.messages)]
        _publish(bench.client, queue, [(task_id, None) for task_id in task_ids])
    log = bench.folder / f"{queue}.log"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(bench.folder), *sys.path]),
        "BENCH_ROW": row,
        "BENCH_PREFETCH_MULTIPLIER": str(bench.options.prefetch_multiplier),
        "BENCH_RESULT_BACKEND": bench.backends.get(row, ""),
        "BEATKEEPER_DATABASE_URL": bench.settings.require_database_url(),
        "BEATKEEPER_DB_SCHEMA": bench.settings.db_schema,
        "BEATKEEPER_BROKER_URL": bench.settings.require_broker_url(),
    }
    command = [
        sys.executable, "-m", "celery", "-A", "benchapp", "worker", "--pool", "prefork",
        "-c", str(bench.options.concurrency), "-Q", queue, "-n", f"{queue}@%h",
        "--loglevel", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat",
    ]  # fmt: skip
    with log.open("wb") as out:
        worker = subprocess.Popen(command, env=env, cwd=bench.folder, stdout=out, stderr=out)
    try:
        return _drained(bench, log, worker)
    finally:
        worker.terminate()
        worker.wait(timeout=60)
        bench.client.connection_for_write().default_channel.queue_delete(queue)
        if row == "redis_backend":
            _rows.forget_results(bench.backends[row], task_ids)


def _publish_runs(bench: Bench, queue: str) -> list[str]:
    """Beat's part: a schedule, one enqueued run per message, one message per run."""
    schedule_id = uuid.uuid4()
    name = f"noop-{schedule_id.hex[:8]}"
    now = datetime.now(UTC)
    with bench.engine.begin() as db:
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
            {"schedule": schedule_id, "now": now, "task": TASK, "count": bench.options.messages},
        ).scalars()
        task_ids = [str(run_id) for run_id in run_ids]
    headers = run_headers(
        schedule=f"bench/{name}", schedule_id=schedule_id, planned_at=now, attempt=1,
        max_attempts=1,
    )  # fmt: skip
    _publish(bench.client, queue, [(task_id, headers) for task_id in task_ids])
    return task_ids


def _publish(client: Celery, queue: str, messages: list[tuple[str, Any]]) -> None:
    with client.producer_or_acquire() as producer:
        for task_id, headers in messages:
            client.send_task(TASK, task_id=task_id, headers=headers, queue=queue, producer=producer)


def _drained(bench: Bench, log: Path, worker: subprocess.Popen[bytes]) -> dict[str, Any]:
    count = bench.options.messages
    deadline = time.monotonic() + 60 + count / 5  # the database backend can be that slow here
    processes: list[psutil.Process] = []
    before = redis_before = 0.0
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            raise SystemExit(f"the worker exited:\n{log.read_text()}")
        if not processes and "ready." in log.read_text(errors="replace"):
            main_process = psutil.Process(worker.pid)
            processes = [main_process, *main_process.children(recursive=True)]
            before, redis_before = _cpu(processes), _cpu(_present(bench.redis))
        received, succeeded = _times(log)
        if len(succeeded) >= count:
            backends = _backends_of(bench.engine, processes)
            cpu = {
                "worker": round((_cpu(processes) - before) / count * 1000, 3),
                "database": round(_cpu(backends) / count * 1000, 3),
            }
            if bench.redis is not None:
                cpu["redis"] = round((_cpu([bench.redis]) - redis_before) / count * 1000, 3)
            return {
                "per_second": round((count - 1) / (max(succeeded) - min(received)), 1),
                "cpu_ms_per_task": cpu,
            }
        time.sleep(0.2)
    raise SystemExit(f"the worker did not finish {count} tasks in time:\n{log.read_text()[-3000:]}")


def _present(process: psutil.Process | None) -> list[psutil.Process]:
    return [] if process is None else [process]


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
