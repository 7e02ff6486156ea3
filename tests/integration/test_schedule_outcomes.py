"""``beatkeeper_schedule_runs_total``: missed, skipped, expired, dead and throttled runs,
scraped from the exposition the way Prometheus reads it, with bounded schedule labels."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import timedelta

import pytest
from beatkeeper_worker.retries import after_failure
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update
from test_planning import MINUTE, T0, Beat, beat

from beatkeeper.observability import metrics
from beatkeeper.states import RunState
from beatkeeper.store.models import runs

__all__ = ["beat"]  # the fixture, used by name


def scraped() -> dict[tuple[str, str, str], float]:
    """Each ``beatkeeper_schedule_runs_total`` sample by (outcome, schedule_namespace, schedule)."""
    text = metrics.exposition()[0].decode()
    return {
        (s.labels["outcome"], s.labels["schedule_namespace"], s.labels["schedule"]): s.value
        for family in text_string_to_metric_families(text)
        if family.name == "beatkeeper_schedule_runs"
        for s in family.samples
        if s.name == "beatkeeper_schedule_runs_total"
    }


def added(before: dict[tuple[str, str, str], float]) -> dict[tuple[str, str, str], float]:
    now = scraped()
    return {
        key: value - before.get(key, 0) for key, value in now.items() if value != before.get(key, 0)
    }


@pytest.fixture
def labelled() -> Iterator[str]:
    """Schedule labels on, for schedules named after a fresh prefix; off again afterwards."""
    metrics.label_schedules("schedule", 3)
    yield f"s{secrets.token_hex(3)}"
    metrics.label_schedules("none", 500)


def test_throttled_and_missed_runs_are_counted_by_schedule(beat: Beat, labelled: str) -> None:
    limit = {"key": "instagram", "runs": 1, "per": "5m"}
    ids = {  # one of the two waits for the budget past its deadline
        beat.apply(f"{labelled}-{n}", T0, rateLimit=limit, interval="10m", startingDeadline="2m"): n
        for n in ("a", "b")
    }
    before = scraped()
    beat.tick_at(T0 + 10 * MINUTE)
    beat.tick_at(T0 + 15 * MINUTE + timedelta(seconds=1))
    [held] = [run for run in beat.runs() if run.state == RunState.MISSED]
    name = ids[held.schedule_id]
    assert added(before) == {
        ("throttled", "team", f"{labelled}-{name}"): 1,
        ("missed", "team", f"{labelled}-{name}"): 1,
    }


def test_skipped_and_dead_runs_are_counted(beat: Beat, labelled: str) -> None:
    name = f"{labelled}-busy"
    beat.apply(name, T0, concurrencyPolicy="Forbid", retry={"maxAttempts": 2})
    before = scraped()
    beat.tick_at(T0 + MINUTE)
    beat.tick_at(T0 + 2 * MINUTE)  # the first run is still enqueued: this one is skipped
    first = beat.runs()[0]
    with beat.engine.begin() as db:
        db.execute(update(runs).where(runs.c.id == first.id).values(state="failed", attempt=2))
        after_failure(db, first.id, error="boom", now=T0 + 2 * MINUTE)
    assert added(before) == {("skipped", "team", name): 1, ("dead", "team", name): 1}


def test_past_the_limit_schedules_share_the_other_series(beat: Beat, labelled: str) -> None:
    for n in range(5):
        beat.apply(f"{labelled}-{n}", T0, startingDeadline="10s")
    before = scraped()
    beat.tick_at(T0 + 2 * MINUTE - timedelta(seconds=1))  # 59 s late: every one is missed
    counted = added(before)
    assert sum(counted.values()) == 5
    assert len(counted) <= 4  # at most 3 schedules (the limit this test set) and other
    assert counted.get(("missed", "other", "other"), 0) >= 2


def test_without_labels_there_is_one_series_per_outcome(beat: Beat) -> None:
    for n in range(3):
        beat.apply(f"quiet-{n}", T0, startingDeadline="10s")
    before = scraped()
    beat.tick_at(T0 + 2 * MINUTE - timedelta(seconds=1))
    assert added(before) == {("missed", "", ""): 3}
