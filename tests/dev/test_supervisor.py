"""`beatkeeper dev`'s Supervisor stops children that ignore SIGTERM within one grace period."""

from __future__ import annotations

import re
import sys
import time

import psutil
import pytest
from waiting import wait_for

from beatkeeper.dev import processes
from beatkeeper.dev.processes import Supervisor

STUBBORN = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('ignoring SIGTERM', flush=True); time.sleep(120)"
)


def test_children_that_ignore_sigterm_are_killed_after_one_shared_grace_period(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(processes, "STOP_SECONDS", 2.0)
    lines: list[str] = []
    supervisor = Supervisor(write=lines.append)
    children = [
        supervisor.start(name, [sys.executable, "-c", STUBBORN], {})
        for name in ("beat", "worker", "flower")
    ]
    wait_for(
        lambda: sum("ignoring SIGTERM" in line for line in lines) == len(children),
        what="every child to ignore SIGTERM",
    )

    started = time.monotonic()
    supervisor.stop()
    took = time.monotonic() - started

    # One grace period each would take 6 s; one shared period takes about 2 s.
    assert took < 5.0, took
    assert all(not psutil.pid_exists(c.process.pid) or c.process.poll() is not None
               for c in children)  # fmt: skip
    killed = sorted(line.split()[0] for line in lines if "did not stop within 2s" in line)
    assert killed == ["beat", "flower", "worker"], lines


def test_lines_matching_a_childs_quiet_pattern_are_not_shown() -> None:
    lines: list[str] = []
    supervisor = Supervisor(write=lines.append)
    chatty = "print('Inspect method stats failed'); print('Visit me', flush=True)"
    child = supervisor.start(
        "flower",
        [sys.executable, "-c", chatty],
        {},
        quiet=re.compile(r"Inspect method \w+ failed$"),
    )
    child.process.wait(timeout=30)
    child.reader.join(timeout=10)
    assert lines == ["flower | Visit me"]
