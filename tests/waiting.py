"""Waiting for a condition with a deadline: the one way every test suite waits.

Tests never sleep for something to happen; they poll what they expect until a deadline.
``tests/`` is on ``sys.path`` for every suite (pytest puts the folder of the root
``conftest.py`` there), so any test module imports this as ``from waiting import wait_for``.
This module holds no fixtures and starts nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["wait_for"]

_T = TypeVar("_T")


def wait_for(
    condition: Callable[[], _T | None],
    *,
    timeout: float = 20.0,
    what: str = "condition",
    interval: float = 0.05,
) -> _T:
    """Poll ``condition`` until it returns something truthy, and return that.

    ``condition`` is asked at least once, and once more after the deadline, so a slow
    poll never fails a condition that did come true in time. Fails with an
    ``AssertionError`` naming ``what``; ``interval`` is the pause between polls, not a wait
    for anything to happen.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)
