"""The status refresher builds a schedule's recurrence once per spec, not once per change."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from types import SimpleNamespace

from beatkeeper_operator import status

from beatkeeper.spec import ScheduleSpec
from beatkeeper.store.schedules import spec_document, spec_hash

CREATED = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


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
