"""A database URL with an unescaped '@' in its password stops every component at start-up
with one line that never shows the password: real ``celery worker``/``beat`` processes and
the CLI."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

PASSWORD_TAIL = "Zq9secretTail"
URL = f"postgresql://bk:hunter2@{PASSWORD_TAIL}@127.0.0.1:5432/bk"
LINE = (
    "BEATKEEPER_DATABASE_URL: the user name or password contains '@' or ':' unescaped: "
    "percent-encode @ as %40 and : as %3A"
)
CELERY = [sys.executable, "-m", "celery", "-A", "beatkeeper_worker"]
COMMANDS = {
    "worker": [*CELERY, "worker", "--pool", "solo"],
    "beat": [*CELERY, "beat", "-S", "beatkeeper_worker.beat:DatabaseScheduler"],
    "cli": [os.path.join(os.path.dirname(sys.executable), "beatkeeper"), "runs"],
}


@pytest.mark.parametrize("component", sorted(COMMANDS))
def test_component_exits_with_one_line_that_hides_the_password(
    component: str, broker_url: str
) -> None:
    env = {
        **os.environ,
        "BEATKEEPER_DATABASE_URL": URL,
        "BEATKEEPER_BROKER_URL": broker_url,
        "BEATKEEPER_LOG_FORMAT": "console",
    }
    done = subprocess.run(
        COMMANDS[component],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert LINE in output
    assert PASSWORD_TAIL not in output
    assert "hunter2" not in output
    assert "Traceback" not in output
    assert "ready" not in output
