"""The status refresher builds a schedule's recurrence once per spec, not once per change."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from beatkeeper_operator import status
from dateutil import rrule as du

from beatkeeper.spec import ScheduleSpec
from beatkeeper.store.schedules import spec_document, spec_hash

CREATED = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


@pytest.fixture
def generated_walls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    counter = [0]
    original = du.rrule._iter

    def counting(self: du.rrule) -> Iterator[datetime]:
        for wall in original(self):  # type: ignore[attr-defined]
            counter[0] += 1
            yield wall

    monkeypatch.setattr(du.rrule, "_iter", counting)
    return counter


def test_a_changed_row_with_an_unchanged_count_rule_costs_no_expansion(
    generated_walls: list[int],
) -> None:
    document = spec_document(
        ScheduleSpec.model_validate({"task": "t", "rrule": "FREQ=SECONDLY;COUNT=100000"})
    )
    row = SimpleNamespace(
        id=uuid.uuid4(),
        spec=document,
        spec_hash=spec_hash(document),
        created_at=CREATED,
        suspended=False,
        deleted_at=None,
        next_run_at=CREATED,
        planned_count=1,
    )
    status._upcoming(row)  # the first look builds it
    generated_walls[0] = 0
    for seconds in range(1, 11):  # the row changes after every run
        row.next_run_at = CREATED.replace(second=seconds)
        row.planned_count += 1
        assert len(status._upcoming(row)) == status.NEXT_RUN_TIMES
    assert generated_walls[0] < 10 * 40
