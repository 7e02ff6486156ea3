"""Importing beatkeeper's worker package leaves a user's own Celery app in charge."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

USER_MODULE = """\
from celery import Celery, shared_task
app = Celery("userapp", broker="memory://")

from beatkeeper_worker.tracking import install  # after the app, as a user may well write it
install(app)

@shared_task
def hello():
    return 1
"""

PROBE = """\
import json, userapp
from celery import current_app
print(json.dumps({"current": current_app.main, "shared_task": userapp.hello.app.main}))
"""


def test_a_user_app_made_before_importing_tracking_stays_current(tmp_path: Path) -> None:
    (tmp_path / "userapp.py").write_text(USER_MODULE)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BEATKEEPER_")}
    # In a fresh interpreter: the current app is process-wide state.
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    # Bound to beatkeeper's app instead, the task would need BEATKEEPER_BROKER_URL.
    assert json.loads(result.stdout) == {"current": "userapp", "shared_task": "userapp"}
