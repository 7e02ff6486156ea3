"""Beat's publish log lines name the runs they are about, one line per batch."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from test_planning import MINUTE, T0, Beat, beat

from beatkeeper.states import RunState

__all__ = ["beat"]  # the fixture, used by name


def test_a_published_batch_logs_its_run_ids_at_debug(
    beat: Beat, caplog: pytest.LogCaptureFixture
) -> None:
    for name in ("a", "b"):
        beat.apply(name, T0)
    with caplog.at_level(logging.DEBUG, logger="beatkeeper_worker.publish"):
        assert beat.tick_at(T0 + MINUTE).published == 2
    [line] = [r for r in caplog.records if r.getMessage().startswith("published")]
    assert line.levelno == logging.DEBUG
    assert line.getMessage().split(": ")[1].split() == [str(run.id) for run in beat.runs()]


def test_runs_recorded_instead_of_sent_are_named_at_info(
    beat: Beat, caplog: pytest.LogCaptureFixture
) -> None:
    limit = {"key": "instagram", "runs": 1, "per": "5m"}
    for name in ("a", "b"):  # one of the two waits for the budget past its deadline
        beat.apply(name, T0, rateLimit=limit, interval="10m", startingDeadline="2m")
    beat.tick_at(T0 + 10 * MINUTE)
    with caplog.at_level(logging.INFO, logger="beatkeeper_worker.publish"):
        beat.tick_at(T0 + 15 * MINUTE + timedelta(seconds=1))
    [missed] = [run for run in beat.runs() if run.state == RunState.MISSED]
    [line] = [r for r in caplog.records if r.getMessage().startswith("recorded")]
    assert line.levelno == logging.INFO
    assert line.getMessage().startswith("recorded 1 runs missed instead of publishing them (")
    assert line.getMessage().endswith(f"): {missed.id}")
