"""`beatkeeper dev`: the whole stack on this machine (embedded PostgreSQL and Redis)."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import click

from beatkeeper.cli.output import UserError, stderr
from beatkeeper.dev.servers import DEFAULT_STATE
from beatkeeper.dev.stack import Options, StackError, run
from beatkeeper.settings import SettingsError
from beatkeeper.store.engine import DatabaseUnavailable

DEFAULT_MANIFESTS = Path("manifests/examples")


@click.command("dev")
@click.option(
    "-f", "--filename", "paths", multiple=True, type=click.Path(path_type=Path),
    help=f"Manifest file or folder to load and watch (default {DEFAULT_MANIFESTS}/).",
)  # fmt: skip
@click.option(
    "--state-dir", "state", type=click.Path(path_type=Path), default=DEFAULT_STATE,
    show_default=True,
    help="Where the embedded servers keep their data between runs; one stack per folder.",
)  # fmt: skip
@click.option("--state", "old_state", type=click.Path(path_type=Path), hidden=True)
@click.option("--flower-port", default=5555, show_default=True, type=click.IntRange(1, 65535))
@click.option("--concurrency", default=2, show_default=True, type=click.IntRange(1, 64))
def dev(
    paths: tuple[Path, ...], state: Path, old_state: Path | None, flower_port: int, concurrency: int
) -> None:
    """Run Beat, a worker and Flower here, with embedded PostgreSQL and Redis.

    Loads the Schedule manifests (and re-applies them when they change), then shows
    Flower at http://127.0.0.1:5555/flower/ with no login. It owns only the schedules
    it applied from these manifests: removing one from its file deletes that schedule;
    schedules made with `beatkeeper apply` are left alone. BEATKEEPER_DATABASE_URL /
    BEATKEEPER_BROKER_URL use your own servers instead. Ctrl-C stops everything; the
    next run resumes where this one stopped. A second stack needs its own --state-dir
    and --flower-port.

    \b
    Examples:
      beatkeeper dev
      beatkeeper dev -f schedules/
      beatkeeper dev -f other/ --state-dir .beatkeeper/dev2 --flower-port 5556
    """
    state = old_state or state  # --state: the option's name before 0.2
    chosen = list(paths) or [DEFAULT_MANIFESTS]
    missing = [str(p) for p in chosen if not p.exists()]
    if missing:
        raise UserError(f"no such file or folder: {', '.join(missing)}")
    options = Options(paths=chosen, state=state, flower_port=flower_port, concurrency=concurrency)
    stop = threading.Event()
    _stop_on_signals()
    try:
        code = run(options, say=_say, stop=stop)
    except (StackError, SettingsError, DatabaseUnavailable) as error:
        raise UserError(str(error)) from None
    except KeyboardInterrupt:
        stop.set()
        code = 0
    raise SystemExit(code)


def _stop_on_signals() -> None:
    """Ctrl-C, SIGTERM (``kill``, a service manager) and a closed terminal all stop the stack
    the same clean way; repeats are ignored while it stops (which is bounded in time).

    Set explicitly: a shell starts a background job with SIGINT ignored, and Python's
    default for SIGTERM and SIGHUP exits without stopping the children or the servers.
    A SIGHUP ignored by ``nohup`` stays ignored.
    """

    def interrupt(_signum: int, _frame: object) -> None:
        for number in _STOP_SIGNALS:
            signal.signal(number, signal.SIG_IGN)
        raise KeyboardInterrupt

    for number in _STOP_SIGNALS:
        if number != signal.SIGHUP or signal.getsignal(number) != signal.SIG_IGN:
            signal.signal(number, interrupt)


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _say(message: str) -> None:
    stderr.print(f"beatkeeper | {message}", markup=False, highlight=False)
