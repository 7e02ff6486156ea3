"""Beat's periodic stats line is at DEBUG unless asked for: the metrics carry the figures."""

from __future__ import annotations

import logging

import pytest
from beatkeeper_worker.beat import DatabaseScheduler, stats_level
from beatkeeper_worker.tick import TickReport


def test_beats_stats_line_is_at_debug_unless_asked_for() -> None:
    assert stats_level(None) == logging.DEBUG
    assert stats_level(1.0) == logging.INFO  # beatkeeper_beat_stats_every set


def test_the_stats_line_is_logged_at_its_level(caplog: pytest.LogCaptureFixture) -> None:
    scheduler = object.__new__(DatabaseScheduler)  # only the accounting, no servers
    scheduler._totals, scheduler._ticks = TickReport(), 0
    scheduler._stats_every, scheduler._stats_at = 60.0, 0.0
    scheduler._stats_level = stats_level(None)
    with caplog.at_level(logging.DEBUG, logger="beatkeeper_worker.beat"):
        scheduler._account(TickReport(planned=3, published=3))
    [record] = [r for r in caplog.records if "beat: stats" in r.getMessage()]
    assert record.levelno == logging.DEBUG
    assert '"planned": 3' in record.getMessage()
