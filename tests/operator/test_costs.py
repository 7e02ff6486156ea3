"""What creating Schedules costs the operator: statements per new row, API requests each.

The benchmark (``benchmarks/kube_operator.py``) measures these at 10,000 Schedules; these
tests pin the behaviours its figures rest on, at a size that runs in seconds.
"""

from __future__ import annotations

import asyncio
import re
from collections import defaultdict
from typing import Any

from harness import create, eventually, manifest, ready
from sqlalchemy import event


async def test_creating_a_schedule_reads_nothing_from_the_runs_table(cluster, start_operator, db):
    handle = await start_operator()
    engine = (await eventually(lambda: handle.runtime, what="the operator's runtime")).engine
    # Statements grouped by the Connection (one per transaction) that sent them.
    sent: dict[Any, list[str]] = defaultdict(list)

    def record(connection: Any, _cursor: Any, statement: str, *_: Any) -> None:
        sent[connection].append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        await create(cluster, manifest("fresh"))
        await eventually(lambda: ready(cluster, "team-a", "fresh")["reason"] == "Scheduled")
    finally:
        event.remove(engine, "before_cursor_execute", record)

    creating = [
        statements
        for statements in list(sent.values())
        if any(statement.startswith("INSERT INTO schedules") for statement in statements)
    ]
    assert len(creating) == 1
    assert [s for s in creating[0] if re.search(r"\bFROM schedules\b", s)]  # it did read back
    assert not [s for s in creating[0] if re.search(r"\bruns\b", s)]


async def test_a_new_schedule_costs_at_most_three_requests(cluster, start_operator, db):
    await start_operator()
    names = [f"batch-{i}" for i in range(5)]
    await asyncio.gather(*(create(cluster, manifest(name)) for name in names))
    for name in names:
        await eventually(lambda name=name: ready(cluster, "team-a", name)["reason"] == "Scheduled")
    await asyncio.sleep(1.0)  # several refresher polls, the new rows inside their overlap

    writes = {
        kind: count
        for kind, count in cluster.counts.items()
        if kind.split(":")[0] in {"CREATE", "UPDATE", "DELETE"}
    }
    operator_writes = sum(writes.values()) - len(names)  # the test's own creates left out
    assert operator_writes <= 3 * len(names), writes
