"""`beatkeeper dev`'s first screen: every Schedule it loaded, aligned, with its next run."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Literal

from beatkeeper.dev.stack import schedule_table
from beatkeeper.store.schedules import Applied

NOW = datetime(2026, 3, 2, 9, 0, 0, tzinfo=UTC)


def applied(
    name: str,
    action: Literal["created", "updated", "unchanged"],
    trigger: str,
    after: timedelta | None,
) -> Applied:
    namespace, _, name = name.partition("/")
    at = None if after is None else NOW + after
    return Applied(uuid.uuid4(), namespace, name, action, at, trigger)


def test_each_schedule_gets_one_aligned_line_with_its_next_run() -> None:
    lines = schedule_table(
        [
            applied("publishing/tick", "unchanged", "every 1m", timedelta(seconds=42)),
            applied("chores/generate", "created", "every 45m", timedelta(minutes=30, seconds=5)),
            applied("credits/monthly", "updated", "cron 0 0 1 * *", timedelta(days=27, hours=15)),
            applied("events/once", "unchanged", "at 2026-01-01", None),
        ],
        now=NOW,
    )
    assert lines == [
        "4 schedules, next runs in UTC:",
        "  chores/generate  created    every 45m       2026-03-02 09:30:05 (in 30m5s)",
        "  credits/monthly  updated    cron 0 0 1 * *  2026-03-30 00:00:00 (in 27d15h)",
        "  events/once      unchanged  at 2026-01-01   no next run",
        "  publishing/tick  unchanged  every 1m        2026-03-02 09:00:42 (in 42s)",
    ]


def test_nothing_loaded_lists_nothing() -> None:
    assert schedule_table([], now=NOW) == []
