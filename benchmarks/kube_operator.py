"""How the operator copes with many Schedules, against the Kubernetes API emulator.

    python benchmarks/kube_operator.py [--quick] [-n 10000] [--idle 60]

Creates N Schedules (spread over 10 namespaces) in the API emulator of the operator tests
(``tests/operator/emulator.py``) while the real operator runs in its own process (this
script with ``--run-operator``), and reports as JSON on stdout: seconds from the first
create until every Schedule has a database row and ``Ready=True``, the operator's RSS
(peak and at the end), API requests per Schedule while they were created (the
benchmark's own creates left out; by kind), and every API request during an idle period
after they settled. Targets at 10,000: at most 120 s, 300 MB, 3 requests per Schedule and
no request while idle. ``--quick`` is N=500.

Database: ``BEATKEEPER_BENCH_DATABASE_URL``, else PostgreSQL on 127.0.0.1:5432 if it
answers, else an embedded one (pgserver); the schema ``bk_bench_operator`` is recreated.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psutil
from sqlalchemy import func, select, text

from beatkeeper.settings import Settings, normalise_database_url
from beatkeeper.store import make_engine, migrate
from beatkeeper.store.models import schedules

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent / "tests" / "operator"))

import kmock  # noqa: E402
from emulator import SCHEDULES, Emulator, make_emulator  # noqa: E402

SCHEMA = "bk_bench_operator"
NAMESPACES = 10
CONCURRENCY = 32  # creates in flight, like a few kubectl apply loops


def database_url(folder: Path) -> str:
    configured = os.environ.get("BEATKEEPER_BENCH_DATABASE_URL")
    if configured:
        return normalise_database_url(configured)
    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=1).close()
    except OSError:
        import pgserver  # noqa: PLC0415

        return normalise_database_url(pgserver.get_server(folder / "pg").get_uri())
    return normalise_database_url("postgresql://postgres@127.0.0.1:5432/postgres")


def run_operator() -> None:
    """The operator as deployed (handlers, default timings), logged in to the emulator."""
    import beatkeeper_operator.handlers  # noqa: F401, PLC0415
    import kopf  # noqa: PLC0415
    from beatkeeper_operator.runtime import OperatorConfig, configure_collector  # noqa: PLC0415

    server = os.environ["BENCH_EMULATOR_URL"]

    @kopf.on.login()
    def login(**_: Any) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=server, scheme="Bearer", token="bench")

    config = OperatorConfig(settings=Settings.from_env())
    configure_collector()
    profile = os.environ.get("BENCH_OPERATOR_PROFILE")  # a file for cProfile's statistics
    if profile:
        import cProfile  # noqa: PLC0415

        with cProfile.Profile() as profiler:
            kopf.run(standalone=True, clusterwide=True, memo=kopf.Memo(config=config))
        profiler.dump_stats(profile)
        return
    kopf.run(standalone=True, clusterwide=True, memo=kopf.Memo(config=config))


def manifest(i: int) -> dict[str, Any]:
    return {
        "apiVersion": "beatkeeper.io/v1alpha1",
        "kind": "Schedule",
        "metadata": {"name": f"s{i:06d}", "namespace": f"team-{i % NAMESPACES}"},
        "spec": {"task": "bench.noop", "cron": f"{i % 60} * * * *"},
    }


def all_ready(emulator: Emulator) -> int:
    done = 0
    for (resource, _, _), obj in list(emulator.objects.items()):
        if resource != SCHEDULES or obj.deleted:
            continue
        conditions = (obj.raw.get("status") or {}).get("conditions") or []
        done += any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    return done


def database_cpu(engine: Any) -> dict[int, float] | None:
    """CPU seconds of each PostgreSQL process serving the operator, when the server runs on
    this machine (None otherwise): the operator's connections are pooled, so its backends
    live from their first use to the end of the run."""
    with engine.connect() as db:
        pids = db.execute(
            text("SELECT pid FROM pg_stat_activity WHERE application_name = :name"),
            {"name": "beatkeeper-operator"},
        ).scalars()
        found: dict[int, float] = {}
        for pid in pids:
            try:
                process = psutil.Process(pid)
                if not process.name().startswith("postgres"):
                    return None  # a server elsewhere: this pid is some local process
                found[pid] = sum(process.cpu_times()[:2])
            except psutil.Error:
                return None
    return found


def cpu_since(before: dict[int, float] | None, after: dict[int, float] | None) -> float | None:
    if before is None or after is None:
        return None
    return round(sum(after.values()) - sum(before.get(pid, 0.0) for pid in after), 1)


class Sampler:
    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = 0

    def rss(self) -> int:
        rss = int(self.process.memory_info().rss)
        self.peak = max(self.peak, rss)
        return rss


async def wait_until(check: Any, *, timeout: float, sampler: Sampler, every: float = 0.5) -> float:
    start = time.monotonic()
    while not check():
        sampler.rss()
        if time.monotonic() - start > timeout:
            raise TimeoutError("gave up waiting")
        await asyncio.sleep(every)
    return time.monotonic() - start


async def create_all(url: str, n: int) -> None:
    import aiohttp  # noqa: PLC0415

    queue = list(range(n))
    async with aiohttp.ClientSession(base_url=url) as session:

        async def creator() -> None:
            while queue:
                body = manifest(queue.pop())
                namespace = body["metadata"]["namespace"]
                path = f"/apis/beatkeeper.io/v1alpha1/namespaces/{namespace}/schedules"
                async with session.post(path, json=body) as response:
                    response.raise_for_status()

        await asyncio.gather(*(creator() for _ in range(CONCURRENCY)))


def requests_since(emulator: Emulator, before: Counter[str]) -> dict[str, int]:
    delta = emulator.counts - before
    return dict(sorted(delta.items()))


async def bench(n: int, idle: float, settings: Settings) -> dict[str, Any]:
    engine = make_engine(settings)

    def rows() -> int:
        with engine.connect() as db:
            query = (
                select(func.count()).select_from(schedules).where(schedules.c.deleted_at.is_(None))
            )
            return int(db.execute(query).scalar_one())

    emulator = make_emulator()
    async with emulator, kmock.Server(emulator) as server:
        url = str(server.url).rstrip("/")
        env = {
            **os.environ,
            "BENCH_EMULATOR_URL": url,
            "BEATKEEPER_DATABASE_URL": settings.require_database_url(),
            "BEATKEEPER_DB_SCHEMA": settings.db_schema,
            "BEATKEEPER_LOG_LEVEL": "WARNING",
            "PYTHONPATH": os.pathsep.join(
                str(HERE.parent / part) for part in ("src", "operator", "tests/operator")
            ),
        }
        operator = subprocess.Popen(
            [sys.executable, __file__, "--run-operator"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        sampler = Sampler(operator.pid)
        try:
            # Watching the Schedules means it finished starting up.
            await wait_until(lambda: emulator.counts["WATCH:"] >= 2, timeout=60, sampler=sampler)
            await asyncio.sleep(1.0)
            rss_started = sampler.rss()
            before = emulator.counts.copy()
            cpu_before = sum(sampler.process.cpu_times()[:2])
            own_cpu_before = sum(psutil.Process().cpu_times()[:2])
            database_before = database_cpu(engine)
            start = time.monotonic()
            await create_all(url, n)
            created = time.monotonic() - start
            await wait_until(
                lambda: rows() == n and all_ready(emulator) == n,
                timeout=max(600.0, n / 10),
                sampler=sampler,
                every=0.5 if n <= 2000 else 2.0,  # scanning every object costs the emulator
            )
            converged = time.monotonic() - start
            operator_cpu = sum(sampler.process.cpu_times()[:2]) - cpu_before
            emulator_cpu = sum(psutil.Process().cpu_times()[:2]) - own_cpu_before
            database = cpu_since(database_before, database_cpu(engine))
            creation = requests_since(emulator, before)
            operator_requests = sum(creation.values()) - creation.get("CREATE:", 0)
            # The refresher re-reads what changed in the last 5 s; let that pass first.
            await asyncio.sleep(8.0)
            before_idle = emulator.counts.copy()
            watches_before = len(emulator.watches)
            rss_idle_start = sampler.rss()
            await asyncio.sleep(idle)
            idle_requests = requests_since(emulator, before_idle)
            idle_watches = emulator.watches[watches_before:]
            rss_end = sampler.rss()
        finally:
            operator.terminate()
            _, stderr = operator.communicate(timeout=30)
    engine.dispose()
    return {
        "benchmark": "operator",
        "schedules": n,
        "create_seconds": round(created, 2),
        "seconds_until_all_ready_with_rows": round(converged, 2),
        "schedules_per_second": round(n / converged, 1),
        # Where the time went until then: CPU seconds of the operator, of this process (the
        # emulator), and of the PostgreSQL backends serving the operator (None when the
        # server is not on this machine).
        "cpu_seconds_until_ready": {
            "operator": round(operator_cpu, 1),
            "emulator_and_benchmark": round(emulator_cpu, 1),
            "database": database,
        },
        "operator_rss_mb": {
            "started": round(rss_started / 2**20, 1),
            "peak": round(sampler.peak / 2**20, 1),
            "idle": round(rss_idle_start / 2**20, 1),
            "end": round(rss_end / 2**20, 1),
        },
        "requests_per_schedule_on_creation": round(operator_requests / n, 2),
        "requests_on_creation_by_kind": creation,
        "idle_seconds": idle,
        "requests_while_idle": sum(idle_requests.values()),
        "requests_while_idle_by_kind": idle_requests,
        "watches_while_idle": idle_watches,
        "operator_stderr_tail": stderr.decode(errors="replace").strip().splitlines()[-5:],
        "targets": {"seconds": 120, "rss_mb": 300, "requests_per_schedule": 3, "idle": 0},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="N=500")
    parser.add_argument("-n", type=int, default=10_000, help="how many Schedules")
    parser.add_argument("--idle", type=float, default=60.0, help="seconds of idle to count")
    parser.add_argument("--run-operator", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_operator:
        run_operator()
        return
    n = 500 if args.quick else args.n
    with tempfile.TemporaryDirectory(prefix="bk-bench-operator-") as folder:
        settings = Settings(database_url=database_url(Path(folder)), db_schema=SCHEMA)
        engine = make_engine(settings)
        with engine.begin() as db:
            db.execute(text(f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE'))
        migrate.upgrade(engine)
        engine.dispose()
        result = asyncio.run(bench(n, args.idle, settings))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
