"""Run the local stack: servers, migrations, manifests, Beat, a worker and Flower.

The order matters: the database is migrated and the manifests applied before Beat starts,
so the first tick already sees every schedule; Flower is reported ready only once it
answers, and asks for the login `login` keeps in the state folder. While running, the
manifest folder is watched and re-applied on change; a child that exits stops the stack
with its name and exit code, rather than leaving a half stack.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from beatkeeper.dev import lock, login, servers, sync
from beatkeeper.dev.processes import Supervisor
from beatkeeper.policy import Policy, PolicyError, load_policy
from beatkeeper.settings import Settings, mask_url
from beatkeeper.store import Engine, lookups, make_engine
from beatkeeper.store.schedules import Applied

FLOWER_READY_SECONDS = 60.0
#: Flower serves under /flower/ here as on the chart (its default `flower.urlPrefix`).
FLOWER_PREFIX = "flower"
#: Flower asks the workers for their details as it starts, usually before the worker is
#: up, and warns for each unanswered question; the worker's own lines say when it is ready.
FLOWER_NOISE = re.compile(r"Inspect method \w+ failed$")
EXAMPLE_TASKS = "beatkeeper_examples.tasks"
#: Celery's default queue: a schedule without ``spec.queue`` is sent there.
DEFAULT_QUEUE = "celery"
Say = Callable[[str], None]


class StackError(RuntimeError):
    """Something the user can fix (a port in use, a missing package); said in one line."""


@dataclass(frozen=True)
class Options:
    paths: Sequence[Path]
    state: Path
    flower_port: int
    concurrency: int


def run(options: Options, *, say: Say, stop: threading.Event | None = None) -> int:
    """Run until `stop` is set (or Ctrl-C); return the exit code."""
    try:
        with lock.hold(options.state):
            return _run(options, say=say, stop=stop or threading.Event())
    except lock.StateInUseError as error:
        raise StackError(str(error)) from None


def _run(options: Options, *, say: Say, stop: threading.Event) -> int:
    started = time.monotonic()
    if servers.port_in_use(options.flower_port):
        raise StackError(
            f"port {options.flower_port} on 127.0.0.1 is in use (another beatkeeper dev or "
            "Flower?): stop it or pass --flower-port"
        )
    settings = Settings.from_env()
    embedded_db, embedded_broker = settings.database_url is None, settings.broker_url is None
    try:
        context = servers.embedded(options.state, database=embedded_db, broker=embedded_broker)
        with context as started_servers:
            database_url = settings.database_url or started_servers.database_url
            broker_url = settings.broker_url or started_servers.broker_url
            say(f"PostgreSQL {mask_url(database_url)}{' (embedded)' * embedded_db}")
            say(f"Redis      {mask_url(broker_url)}{' (embedded)' * embedded_broker}")
            env = _child_env(settings, database_url, broker_url)
            engine = make_engine(Settings.from_env(env), application_name="beatkeeper-dev")
            from beatkeeper.store import migrate  # noqa: PLC0415 - slow import

            migrate.upgrade(engine)
            folder = sync.Folder(options.paths, options.state, policy=_policy(settings))
            first = folder.sync(engine)
            for (namespace, name), source in first.elsewhere:
                say(f"{namespace}/{name} kept: its manifest {source} is not under -f this time")
            _report(first, say, listing=True)
            advertised = servers.advertised(
                options.state, database_url=database_url, broker_url=broker_url
            )
            with advertised:
                return _supervise(
                    options, env=env, engine=engine, folder=folder, say=say, stop=stop,
                    started=started,
                )  # fmt: skip
    except (servers.MissingPackageError, servers.ServerStartError) as error:
        raise StackError(str(error)) from None


def _supervise(
    options: Options,
    *,
    env: dict[str, str],
    engine: Engine,
    folder: sync.Folder,
    say: Say,
    stop: threading.Event,
    started: float,
) -> int:
    supervisor = Supervisor()
    python = sys.executable
    app = [python, "-m", "celery", "-A", "beatkeeper_worker"]
    try:
        supervisor.start(
            "beat",
            [*app, "beat", "-S", "beatkeeper_worker.beat:DatabaseScheduler", "-l", "INFO"],
            env,
        )
        queues = _queues(engine)
        say(f"worker consumes {', '.join(queues)} (a queue first named later needs a restart)")
        supervisor.start(
            "worker",
            # INFO: each run's "received" and "succeeded in" lines show in the dev console.
            [*app, "worker", "-P", "prefork", "-c", str(options.concurrency), "-l", "INFO",
             "-Q", ",".join(queues)],
            env,
        )  # fmt: skip
        flower_login = login.flower_login(options.state)
        supervisor.start(
            "flower",
            [
                *app,
                "flower",
                "--address=127.0.0.1",
                f"--port={options.flower_port}",
                f"--url_prefix={FLOWER_PREFIX}",
            ],
            env | {"FLOWER_BASIC_AUTH": flower_login.basic_auth},
            quiet=FLOWER_NOISE,
        )
        url = f"http://127.0.0.1:{options.flower_port}/{FLOWER_PREFIX}"
        if _wait_for_flower(url, supervisor, stop):
            say(
                f"Flower login: user {flower_login.user}, password {flower_login.password} "
                f"(kept in {flower_login.path})"
            )
            say(f"Flower ready at {url}/ ({time.monotonic() - started:.1f}s); Ctrl-C stops")
        watcher = threading.Thread(target=_watch, args=(folder, engine, say, stop), daemon=True)
        watcher.start()
        while not stop.wait(0.5):
            if gone := supervisor.exited():
                child = gone[0]
                say(f"{child.name} exited with code {child.process.returncode}: stopping")
                return 1
        return 0
    finally:
        stop.set()
        say("stopping Beat, the worker and Flower (running tasks finish first)")
        supervisor.stop()


def _queues(engine: Engine) -> list[str]:
    """Celery's default queue and every queue a live schedule routes to."""
    with engine.connect() as db:
        named = lookups.live_queues(db)
    return sorted({*named, DEFAULT_QUEUE})


def _wait_for_flower(url: str, supervisor: Supervisor, stop: threading.Event) -> bool:
    deadline = time.monotonic() + FLOWER_READY_SECONDS
    while time.monotonic() < deadline and not stop.is_set() and not supervisor.exited():
        try:
            with urllib.request.urlopen(f"{url}/healthcheck", timeout=1) as response:  # noqa: S310
                if response.status == 200:
                    return True
        except OSError:
            stop.wait(0.2)  # Flower is still starting; nothing to subscribe to
    return False


def _watch(folder: sync.Folder, engine: Engine, say: Say, stop: threading.Event) -> None:
    import watchfiles  # noqa: PLC0415

    existing = [p for p in folder.paths if p.exists()]
    for _ in watchfiles.watch(*existing, stop_event=stop, debounce=300, rust_timeout=500):
        _report(folder.sync(engine), say)


def _report(outcome: sync.Outcome, say: Say, *, listing: bool = False) -> None:
    """What a sync did; with ``listing`` (the first screen), every Schedule and its next run."""
    for source, problem in outcome.problems:
        say(f"{source}: {problem} (previous version kept)")
    for source in outcome.fixed:
        say(f"{source}: fixed")
    if listing:
        for line in schedule_table([*outcome.applied, *outcome.unchanged], now=datetime.now(UTC)):
            say(line)
    for applied in [] if listing else outcome.applied:
        when = applied.next_run_at.isoformat() if applied.next_run_at else "none"
        say(f"{applied.namespace}/{applied.name} {applied.action}: {applied.trigger}, next {when}")
    for (namespace, name), source in outcome.deleted:
        say(f"{namespace}/{name} deleted (it is no longer in {source})")


def _policy(settings: Settings) -> Policy:
    try:
        return load_policy(settings.policy_file)
    except PolicyError as error:
        raise StackError(str(error)) from None


def _child_env(settings: Settings, database_url: str, broker_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env |= {
        "BEATKEEPER_DATABASE_URL": database_url,
        "BEATKEEPER_BROKER_URL": broker_url,
        "BEATKEEPER_DB_SCHEMA": settings.db_schema,
        "BEATKEEPER_LOG_FORMAT": "console",
        "PYTHONUNBUFFERED": "1",
    }
    if settings.policy_file is not None:  # Beat and the worker enforce the same policy
        env["BEATKEEPER_POLICY_FILE"] = os.path.abspath(settings.policy_file)
    # Beat and the worker would both try to listen on it; one machine needs no probes.
    env.pop("BEATKEEPER_METRICS_PORT", None)
    # Any web page could run tasks through an open API on 127.0.0.1 (see `login`).
    env.pop("FLOWER_UNAUTHENTICATED_API", None)
    if not env.get("BEATKEEPER_IMPORTS", "").strip():
        # The example Schedules' tasks, so `beatkeeper dev` runs out of the box.
        env["BEATKEEPER_IMPORTS"] = EXAMPLE_TASKS
    return env


def schedule_table(applied: list[Applied], *, now: datetime) -> list[str]:
    """One aligned line per Schedule: name, what it did, its trigger and its next run."""
    if not applied:
        return []
    rows = [
        (f"{a.namespace}/{a.name}", a.action, a.trigger, _next_run(a.next_run_at, now=now))
        for a in sorted(applied, key=lambda a: (a.namespace, a.name))
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    lines = [f"{len(rows)} schedules, next runs in UTC:"]
    for name, action, trigger, when in rows:
        lines.append(
            f"  {name:<{widths[0]}}  {action:<{widths[1]}}  {trigger:<{widths[2]}}  {when}"
        )
    return lines


def _next_run(at: datetime | None, *, now: datetime) -> str:
    if at is None:
        return "no next run"
    seconds = max(0, int((at - now).total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "m"), (seconds, "s")]
    shown = [f"{n}{unit}" for n, unit in parts if n][:2] or ["0s"]
    return f"{at.astimezone(UTC):%Y-%m-%d %H:%M:%S} (in {''.join(shown)})"
