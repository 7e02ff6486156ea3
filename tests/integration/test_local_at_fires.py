"""A one-shot `at` given as a local time fires at that wall-clock time in its `timeZone`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from test_planning import Beat, beat

from beatkeeper.states import RunState

__all__ = ["beat"]  # the fixture, used by name


def test_a_local_at_fires_at_its_instant_in_the_time_zone(beat: Beat) -> None:
    created = datetime(2026, 12, 1, tzinfo=UTC)
    schedule_id = beat.apply(
        "christmas-eve", created, interval=None, at="2026-12-24T18:00:00", timeZone="Europe/Paris"
    )
    instant = datetime(2026, 12, 24, 17, tzinfo=UTC)  # 18:00 in Paris (+01:00)
    assert beat.tick_at(instant - timedelta(milliseconds=1)).planned == 0
    assert beat.tick_at(instant).published == 1
    [run] = beat.runs(schedule_id)
    assert (run.planned_at, run.state) == (instant, RunState.ENQUEUED)
    [message] = beat.messages()
    assert message["headers"]["beatkeeper_planned_at"] == instant.isoformat()
