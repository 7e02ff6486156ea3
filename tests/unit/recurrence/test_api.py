"""The public surface others code against: names and the Trigger protocol."""

from __future__ import annotations

import ast
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import beatkeeper.recurrence as recurrence


def test_exported_names_are_pinned() -> None:
    assert sorted(recurrence.__all__) == [
        "AtTrigger",
        "CronTrigger",
        "IntervalTrigger",
        "RRuleTrigger",
        "Recurrence",
        "RecurrenceError",
        "Trigger",
        "resolve_local",
    ]


def test_every_trigger_satisfies_the_protocol() -> None:
    zone = ZoneInfo("UTC")
    start = datetime(2024, 1, 1, tzinfo=UTC)
    triggers = [
        recurrence.CronTrigger("* * * * *", zone),
        recurrence.RRuleTrigger("FREQ=DAILY", datetime(2024, 1, 1), zone),
        recurrence.IntervalTrigger(timedelta(minutes=1), start),
        recurrence.AtTrigger(start),
    ]
    for trigger in triggers:
        assert isinstance(trigger, recurrence.Trigger)


def test_recurrence_error_is_a_value_error() -> None:
    assert issubclass(recurrence.RecurrenceError, ValueError)


def test_the_package_imports_only_the_standard_library_and_dateutil() -> None:
    allowed_roots = {"beatkeeper", "dateutil", "__future__"}
    package = Path(recurrence.__file__).parent

    for module in package.glob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                root = name.split(".")[0]
                assert root in allowed_roots or root in sys.stdlib_module_names, (module.name, name)
                if root == "beatkeeper":
                    assert name.startswith("beatkeeper.recurrence"), (module.name, name)
