"""How Beat scales with the number of schedules, beside Celery's default scheduler and redbeat.

    python benchmarks/scale.py [--quick] [--out results.json]

For N interval schedules whose due times are spread evenly over one period (N/period come
due every second), real ``celery beat`` processes run for a measured window while a drain
thread empties the queues. Reported per configuration (JSON on stdout): due and published
per second, lag (publish time - due time) p50/p95/p99/max, Beat RSS, Beat CPU (cores, and ms per
tick), and for beatkeeper where a tick's time goes (ms per tick and µs per published run for
each phase, from Beat's own stats log). beatkeeper's lag comes from the runs table
(``enqueued_at - due_at``); the peers' from a wrapper around their ``apply_async``.

Servers: as every benchmark finds them (``_servers``): ``BEATKEEPER_BENCH_*`` or
``BEATKEEPER_*`` URLs, else PostgreSQL and Redis on 127.0.0.1, else embedded ones.
``--quick`` runs N=1,000 for a few seconds per configuration (under a minute in all).
``--baseline DIR`` also runs, round after round beside this checkout's Beat, the Beat of
another source tree (say ``git worktree add DIR main``; its ``src`` and ``worker`` go first
on the path), so a change is compared with its base within one run on the same machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import _common
import _servers
import psutil
import redis
from sqlalchemy import Engine, text

from beatkeeper.settings import Settings
from beatkeeper.spec import ScheduleSpec
from beatkeeper.store import make_engine, migrate
from beatkeeper.store.schedules import spec_document

HERE = Path(__file__).parent
SCHEMA = "bk_bench"
# Beat processes start (importing Celery) before the first due time: on a busy 2-CPU host
# that took more than 4 s, and a Beat that starts behind measures its catch-up, not its lag.
LEAD = 8.0


class Drain(threading.Thread):
    """Empties the benchmark queues: nothing consumes them, and Redis must not fill up."""

    def __init__(self, broker: str) -> None:
        super().__init__(daemon=True)
        self.client = redis.Redis.from_url(broker)
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.5):
            self.client.delete(_common.QUEUE, _common.PEER_QUEUE)


def load_schedules(engine: Engine, n: int, period: float, base: float) -> None:
    """N schedules, schedule i first due at base + i * period / N, each with its own spec."""
    template = spec_document(
        ScheduleSpec.model_validate(
            {"task": "bench.noop", "interval": f"{int(period)}s", "queue": _common.QUEUE}
        )
    )
    with engine.begin() as db:
        db.execute(text("TRUNCATE runs, schedules CASCADE"))
        db.execute(
            text("""
            INSERT INTO schedules (id, namespace, name, generation, spec, spec_hash, task,
                                   queue, zone, trigger, next_run_at, next_due_at)
            SELECT gen_random_uuid(), 'bench', 's' || n, 1,
                   CAST(:template AS jsonb) || jsonb_build_object(
                       'kwargs', jsonb_build_object('n', n),
                       'startTime', to_char(first AT TIME ZONE 'UTC',
                                            'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')),
                   md5(n::text), 'bench.noop', :queue, 'UTC', 'bench', first, first
            FROM (SELECT n, to_timestamp(:base + n * :period / :n) AS first
                  FROM generate_series(0, :n - 1) AS n) AS spread
            """),
            {
                "template": json.dumps(template),
                "queue": _common.QUEUE,
                "base": base,
                "period": period,
                "n": n,
            },
        )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as db:
        db.execute(text("VACUUM ANALYZE schedules"))


def reset_schedules(engine: Engine, period: float, base: float) -> None:
    """Plan every schedule's next occurrence after ``base`` again (for the next measurement)."""
    with engine.begin() as db:
        db.execute(text("TRUNCATE runs CASCADE"))
        db.execute(
            text("""
            UPDATE schedules SET planned_count = 0, next_run_at = nxt, next_due_at = nxt
            FROM (SELECT id AS sid, start + ceil(extract(epoch FROM to_timestamp(:base) - start)
                                           / :period) * :period * interval '1 second' AS nxt
                  FROM (SELECT id, CAST(spec->>'startTime' AS timestamptz) AS start
                        FROM schedules) AS s) AS t
            WHERE id = sid
            """),
            {"base": base, "period": period},
        )


class Beats:
    """Beat processes of one configuration, and what they cost."""

    def __init__(self, args: list[str], env: dict[str, str], count: int, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.logs = [folder / f"beat-{i}.log" for i in range(count)]
        self.processes = []
        for i, log in enumerate(self.logs):
            with log.open("w") as out:
                command = [sys.executable, "-m", "celery", *args, "-s", str(folder / f"sch-{i}")]
                self.processes.append(
                    subprocess.Popen(command, env=env, cwd=HERE, stdout=out, stderr=out)
                )
        self.ps = [psutil.Process(p.pid) for p in self.processes]
        self.rss: list[int] = []

    def cpu(self) -> float:
        return sum(p.cpu_times().user + p.cpu_times().system for p in self.ps)

    def sample(self) -> None:
        self.rss.append(max(p.memory_info().rss for p in self.ps))

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()

    def stats(self, start: float, end: float) -> list[dict[str, Any]]:
        """Beat's own stats lines (one per second per process) inside the window.

        Beat logs JSON lines here (``BEATKEEPER_LOG_FORMAT=json``); a stats line's event is
        ``beat: stats {...}``.
        """
        found = []
        for log in self.logs:
            for line in log.read_text().splitlines():
                if '"beat: stats ' not in line:
                    continue
                entry = json.loads(line)
                stamp = datetime.fromisoformat(entry["timestamp"]).timestamp()
                if start <= stamp <= end:
                    found.append(json.loads(entry["event"].removeprefix("beat: stats ")))
        return found


def measure(beats: Beats, *, start: float, seconds: float) -> dict[str, float]:
    """Sleep to the window's start, then sample RSS and CPU through it."""
    time.sleep(max(0.0, start - time.time()))
    cpu = beats.cpu()
    while time.time() < start + seconds:
        beats.sample()
        time.sleep(0.5)
    used = beats.cpu() - cpu
    return {"rss_mb": round(max(beats.rss) / 2**20, 1), "cpu_cores": round(used / seconds, 3)}


def ours(
    engine: Engine,
    env: dict[str, str],
    folder: Path,
    *,
    n: int,
    period: float,
    replicas: int,
    warmup: float,
    seconds: float,
    tree: Path | None = None,
) -> dict[str, Any]:
    """One window of beatkeeper's Beat; ``tree``: the source tree it runs, if not this one."""
    # Each round starts from a clean table: without it the dead rows of the last round's
    # updates sit in the due index, and the first claims of this round step over them.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as db:
        db.execute(text("VACUUM ANALYZE runs, schedules"))
    base = time.time() + LEAD + 2 + n / 25_000  # the reset itself takes a while at 1M
    reset_schedules(engine, period, base)
    args = ["-A", "_common:beatkeeper", "beat", "-S", "beatkeeper_worker.beat:DatabaseScheduler"]
    if tree is not None:
        path = [str(HERE), str(tree / "src"), str(tree / "worker"), env.get("PYTHONPATH", "")]
        env = {**env, "PYTHONPATH": os.pathsep.join(path)}
    label = "baseline" if tree else "ours"
    beats = Beats([*args, "-l", "INFO"], env, replicas, folder / f"{label}-{n}-{replicas}")
    try:
        start = base + warmup
        costs = measure(beats, start=start, seconds=seconds)
    finally:
        beats.stop()
    with engine.connect() as db:
        row = db.execute(
            text("""
            SELECT count(*) FILTER (WHERE enqueued_at BETWEEN :a AND :b) AS published,
                   percentile_cont(ARRAY[0.5, 0.95, 0.99, 1.0]) WITHIN GROUP (ORDER BY
                       extract(epoch FROM coalesce(enqueued_at, :b) - due_at))
                       FILTER (WHERE due_at BETWEEN :a AND :b) AS lag
            FROM runs
            """),
            {
                "a": datetime.fromtimestamp(start, UTC),
                "b": datetime.fromtimestamp(start + seconds, UTC),
            },
        ).one()
    stats = beats.stats(start, start + seconds)
    return {
        "scheduler": "beatkeeper" if tree is None else f"beatkeeper baseline ({tree})",
        "schedules": n,
        "period_s": period,
        "beats": replicas,
        **_rates(n, period, row.published, seconds, list(row.lag or [None] * 4)),
        **costs,
        **_ticks(stats, costs["cpu_cores"] * seconds),
    }


def capacity(
    engine: Engine, env: dict[str, str], folder: Path, *, n: int, replicas: int, seconds: float
) -> dict[str, Any]:
    """Saturation: almost every schedule due at once; how fast do ``replicas`` Beats drain it?"""
    reset_schedules(engine, 60.0, time.time() - 58)  # 58 of 60 seconds' worth are overdue
    with engine.connect() as db:
        backlog = db.execute(text("SELECT count(*) FROM schedules WHERE next_due_at <= now()"))
        due = backlog.scalar_one()
    args = ["-A", "_common:beatkeeper", "beat", "-S", "beatkeeper_worker.beat:DatabaseScheduler"]
    started = time.time()
    beats = Beats([*args, "-l", "INFO"], env, replicas, folder / f"capacity-{n}-{replicas}")
    try:
        time.sleep(LEAD)  # Celery's start-up is not what is measured
        with engine.connect() as db:
            count = "SELECT count(*) FROM runs WHERE enqueued_at BETWEEN :a AND :b"
            window = {
                "a": datetime.fromtimestamp(started + LEAD, UTC),
                "b": datetime.fromtimestamp(started + LEAD + seconds, UTC),
            }
            time.sleep(seconds + 0.5)
            published = db.execute(text(count), window).scalar_one()
    finally:
        beats.stop()
    return {
        "scheduler": "beatkeeper",
        "test": "capacity (backlog drain)",
        "schedules": n,
        "backlog": due,
        "beats": replicas,
        "published_per_s": round(published / seconds, 1),
    }


def _rates(n: int, period: float, published: int, seconds: float, lag: list[Any]) -> dict[str, Any]:
    due = n / period
    return {
        "due_per_s": round(due, 1),
        "published_per_s": round(published / seconds, 1),
        "published_vs_due": round(published / seconds / due, 3),
        **{
            f"lag_{name}_ms": None if value is None else round(value * 1000, 1)
            for name, value in zip(("p50", "p95", "p99", "max"), lag, strict=False)
        },
    }


def _ticks(stats: list[dict[str, Any]], cpu_seconds: float) -> dict[str, Any]:
    ticks = sum(s["ticks"] for s in stats)
    published = sum(s["published"] for s in stats) or 1
    phases: dict[str, float] = {}
    for s in stats:
        for name, value in s["phases"].items():
            phases[name] = phases.get(name, 0.0) + value
    return {
        "ticks": ticks,
        "cpu_ms_per_tick": round(cpu_seconds * 1000 / ticks, 3) if ticks else None,
        "runs_per_tick": round(published / ticks, 1) if ticks else None,
        "phase_us_per_run": {k: round(v * 1e6 / published, 1) for k, v in sorted(phases.items())},
        "phase_ms_per_tick": {k: round(v * 1000 / ticks, 3) for k, v in sorted(phases.items())}
        if ticks
        else {},
    }


def peer(
    kind: str, broker: str, folder: Path, *, n: int, period: float, warmup: float, seconds: float
) -> dict[str, Any]:
    base = time.time() + LEAD + (n / 20_000 if kind == "default" else 0)
    record = folder / f"{kind}-{n}.rec"
    record.write_text("")
    env = {
        **os.environ,
        "BENCH_BROKER_URL": broker,
        "BENCH_N": str(n),
        "BENCH_PERIOD": str(period),
        "BENCH_BASE": str(base),
        "BENCH_RECORD": str(record),
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
    }
    if kind == "redbeat":
        client = redis.Redis.from_url(broker)
        client.flushdb()
        _common.load_redbeat_entries(_common.peer_app(broker), n, period, base)
        scheduler = "_common:MeasuredRedBeatScheduler"
    else:
        env["BENCH_CONF_ENTRIES"] = "1"
        scheduler = "_common:MeasuredPersistentScheduler"
    args = ["-A", "_common:peer", "beat", "-S", scheduler, "-l", "INFO"]
    beats = Beats(args, env, 1, folder / f"{kind}-{n}")
    try:
        start = base + warmup
        costs = measure(beats, start=start, seconds=seconds)
    finally:
        beats.stop()
    rows = [line.split() for line in record.read_text().splitlines() if line]
    inside = [float(lag) for at, lag in rows if start <= float(at) <= start + seconds]
    lags = sorted(inside)
    lag = [lags[int(q * (len(lags) - 1))] for q in (0.5, 0.95, 0.99, 1.0)] if lags else [None] * 4
    return {
        "scheduler": kind,
        "schedules": n,
        "period_s": period,
        "beats": 1,
        **_rates(n, period, len(inside), seconds, lag),
        **costs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="N=1,000 only, a few seconds each")
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--million", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--peers", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--replicas", default="1,2", help="Beat replicas per configuration")
    parser.add_argument("--capacity", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--rounds", type=int, default=1, help="windows per configuration")
    parser.add_argument("--baseline", type=Path, help="another source tree to run alongside")
    options = parser.parse_args()
    sizes = [1000] if options.quick else [int(s) for s in options.sizes.split(",")]
    seconds, warmup = (5.0, 1.5) if options.quick else (options.seconds, 4.0)
    folder = Path(tempfile.mkdtemp(prefix="bk-bench-"))
    database, broker = _servers.servers(folder)
    settings = Settings(database_url=database, db_schema=SCHEMA, broker_url=broker)
    engine = make_engine(settings, pool_size=2)
    with engine.begin() as db:
        db.execute(text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
    migrate.upgrade(engine)
    env = {
        **os.environ,
        "BEATKEEPER_DATABASE_URL": settings.require_database_url(),
        "BEATKEEPER_DB_SCHEMA": SCHEMA,
        "BEATKEEPER_BROKER_URL": broker,
        "BEATKEEPER_LOG_FORMAT": "json",
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
    }
    drain = Drain(broker)
    drain.start()
    results = []
    runs = [(n, 60.0) for n in sizes]
    if options.million and not options.quick:
        runs.append((1_000_000, 3600.0))
    for n, period in runs:
        load_schedules(engine, n, period, time.time() - 2 * period)  # startTime in the past
        trees = [None] if options.baseline is None else [options.baseline.resolve(), None]
        for replicas in (int(r) for r in options.replicas.split(",")):
            for _ in range(options.rounds):
                for tree in trees:
                    window = {"n": n, "period": period, "replicas": replicas, "warmup": warmup}
                    results.append(ours(engine, env, folder, **window, seconds=seconds, tree=tree))
                    print(json.dumps(results[-1]), file=sys.stderr)
        if n == max(sizes) and period == 60.0 and options.capacity and not options.quick:
            for replicas in (1, 2):
                results.append(capacity(engine, env, folder, n=n, replicas=replicas, seconds=10))
                print(json.dumps(results[-1]), file=sys.stderr)
    with engine.begin() as db:
        db.execute(text("TRUNCATE runs, schedules CASCADE"))
    if options.peers:
        peer_sizes = {"default": [s for s in sizes if s <= 10_000], "redbeat": sizes}
        for kind, kind_sizes in peer_sizes.items():
            if kind == "redbeat" and not _common.redbeat_installed():
                results.append({"scheduler": kind, "skipped": "celery-redbeat is not installed"})
                continue
            for n in kind_sizes:
                results.append(
                    peer(kind, broker, folder, n=n, period=60.0, warmup=warmup, seconds=seconds)
                )
                print(json.dumps(results[-1]), file=sys.stderr)
    drain.stop.set()
    print(
        json.dumps(
            {
                "quick": options.quick,
                "cpus": os.cpu_count(),
                "window_s": seconds,
                "results": results,
                "ratios": ratios(results),
            },
            indent=2,
        )
    )


def ratios(results: list[dict[str, Any]]) -> dict[str, Any]:
    """beatkeeper (one Beat) against each peer at the same N, measured in this run."""
    mine = {
        r["schedules"]: r
        for r in results
        if r.get("scheduler") == "beatkeeper" and r["beats"] == 1 and r.get("period_s") == 60.0
    }
    found: dict[str, Any] = {}
    for r in results:
        if r.get("scheduler") in {"default", "redbeat"} and r["schedules"] in mine:
            ours_ = mine[r["schedules"]]
            found[f"{r['scheduler']}@{r['schedules']}"] = {
                "published_per_s": _ratio(ours_["published_per_s"], r["published_per_s"]),
                "lag_p99": _ratio(r["lag_p99_ms"], ours_["lag_p99_ms"]),
            }
    return found


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if not a or not b else round(a / b, 1)


if __name__ == "__main__":
    main()
