"""Beat reads each schedule's spec once per version: a due tick costs the same whatever the rule.

An RRULE with COUNT expands its COUNT once to find its last occurrence; Beat used to rebuild
the rule from the stored spec on every due tick, so ``FREQ=SECONDLY;COUNT=100000`` cost a
quarter of a core. Counted here as dateutil wall times generated per tick.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from beatkeeper_worker import brokers
from beatkeeper_worker.app import make_app
from beatkeeper_worker.tick import Ticker
from sqlalchemy import create_engine

from beatkeeper.decisions.planning import DueSchedule
from beatkeeper.settings import Settings
from beatkeeper.spec import ScheduleSpec
from beatkeeper.store.schedules import spec_document, spec_hash

CREATED = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
TICKS = 20


@pytest.fixture
def ticker() -> Iterator[Ticker]:
    app = make_app(
        Settings(
            database_url="postgresql://nobody@127.0.0.1:1/none",
            broker_url="redis://127.0.0.1:1/0",
        )
    )
    engine = create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")  # never connected
    made = Ticker(engine, app, brokers.for_app(app))
    yield made
    made.close()


def due(**trigger: str) -> DueSchedule:
    spec = ScheduleSpec.model_validate({"task": "t", **trigger})
    document = spec_document(spec)
    return DueSchedule(
        id=uuid.uuid4(),
        namespace="team-a",
        name="dense",
        spec_json=json.dumps(document),
        spec_hash=spec_hash(document),
        created_at=CREATED,
        planned_count=0,
        next_run_at=CREATED,
        next_due_at=CREATED,
    )


def walls_per_tick(ticker: Ticker, schedule: DueSchedule, counter: list[int]) -> float:
    """Read the due schedule and ask for its next occurrence, as each due tick does."""
    moment = CREATED
    ticker._read(schedule)  # the first tick builds it
    counter[0] = 0
    for _ in range(TICKS):
        read = ticker._read(schedule)
        assert read is not None
        following = read[1].next_after(moment)
        assert following is not None
        moment = following
    return counter[0] / TICKS


def test_due_tick_cost_does_not_depend_on_count(ticker: Ticker, generated_walls: list[int]) -> None:
    large = walls_per_tick(ticker, due(rrule="FREQ=SECONDLY;COUNT=100000"), generated_walls)
    small = walls_per_tick(ticker, due(rrule="FREQ=SECONDLY;COUNT=100"), generated_walls)
    assert large < 40
    assert large <= small + 5


def test_a_spec_quick_to_read_is_read_again_rather_than_kept(ticker: Ticker) -> None:
    """Keeping cheap specs only churned the cache (and the garbage collector) at 100k."""
    schedule = due(cron="0 2 * * *")
    read = ticker._read(schedule)
    assert read is not None
    assert ticker._read(schedule) is not read


def test_an_edited_spec_is_read_again(ticker: Ticker, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ticker._specs._recurrences, "_keep_from", 0.0)  # keep every spec
    first = due(cron="0 2 * * *")
    read = ticker._read(first)
    assert read is not None
    assert ticker._read(first) is read  # the same version: kept
    edited = due(cron="0 3 * * *")
    edited = DueSchedule(
        **{**first.__dict__, "spec_json": edited.spec_json, "spec_hash": edited.spec_hash}
    )
    again = ticker._read(edited)
    assert again is not None
    assert again[0].cron == "0 3 * * *"
