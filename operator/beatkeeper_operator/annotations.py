"""The annotations a person (or ``kubectl beatkeeper``) puts on a Schedule to ask for something.

Each holds one request; the operator acts on it when it reconciles the Schedule, and acting
again on the same value does nothing, so it survives updates and operator restarts:

- ``beatkeeper.io/trigger: <token>`` plans one run now, once per token.
- ``beatkeeper.io/backfill: <from>/<to>`` plans the occurrences in the window (RFC 3339
  times with an offset) that were never planned.
- ``beatkeeper.io/resume: <token>`` lifts a pause ``pauseAfterFailures`` put on; the token
  last acted on is kept in ``status.lastResume``.
- ``beatkeeper.io/replay: <token>/<run>`` plans a new run of the schedule's current spec
  for a dead or failed run (its id, or 8 or more of its first characters), once per token.
- ``beatkeeper.io/cancel: <token>/<run>`` cancels a planned, enqueued or retrying run, and
  asks Beat to stop a running one (``beatkeeper.store.cancellations``).

This module imports nothing, so the kubectl plugin can share the names without loading the
store.
"""

from __future__ import annotations

__all__ = [
    "BACKFILL_ANNOTATION",
    "CANCEL_ANNOTATION",
    "MIN_RUN_PREFIX",
    "REPLAY_ANNOTATION",
    "RESUME_ANNOTATION",
    "TRIGGER_ANNOTATION",
    "run_request",
]

TRIGGER_ANNOTATION = "beatkeeper.io/trigger"
BACKFILL_ANNOTATION = "beatkeeper.io/backfill"
RESUME_ANNOTATION = "beatkeeper.io/resume"
REPLAY_ANNOTATION = "beatkeeper.io/replay"
CANCEL_ANNOTATION = "beatkeeper.io/cancel"
#: The shortest run id prefix accepted, as ``beatkeeper runs replay`` does.
MIN_RUN_PREFIX = 8


def run_request(value: str) -> tuple[str, str] | None:
    """The ``(token, run)`` of a replay or cancel annotation, or None if it is malformed."""
    token, slash, run = value.strip().partition("/")
    run = run.strip().lower()
    if not slash or not token.strip() or len(run) < MIN_RUN_PREFIX:
        return None
    return token.strip(), run
