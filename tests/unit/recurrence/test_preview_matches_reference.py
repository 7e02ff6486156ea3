"""`beatkeeper preview` agrees with the brute-force minute scan across real DST transitions.

The engine is checked against the reference in the property tests; this pins the command a
user runs (flag parsing, the `--after` reading, JSON output) to the same answer.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from beatkeeper.cli import main

from .reference import CronSets, cron_occurrences, transitions

EVERY_DAY = frozenset(range(1, 32))
EVERY_WEEKDAY = frozenset(range(7))
EVERY_MONTH = frozenset(range(1, 13))


def sets(minutes: set[int], hours: set[int]) -> CronSets:
    return CronSets(
        seconds=frozenset({0}),
        minutes=frozenset(minutes),
        hours=frozenset(hours),
        days_of_month=EVERY_DAY,
        months=EVERY_MONTH,
        days_of_week=EVERY_WEEKDAY,
        day_of_month_restricted=False,
        day_of_week_restricted=False,
    )


CASES = [
    ("30 2 * * *", sets({30}, {2})),
    ("0,30 * * * *", sets({0, 30}, set(range(24)))),
    ("15 0 * * *", sets({15}, {0})),
    ("45 1 * * *", sets({45}, {1})),
]
ZONES = [
    "Europe/London",
    "America/New_York",
    "Australia/Lord_Howe",  # 30-minute DST shift
    "Pacific/Apia",  # skipped 30 December 2011 entirely
    "America/Santiago",  # transitions at midnight
]


def preview(*args: str, capsys: pytest.CaptureFixture[str]) -> list[datetime]:
    old = sys.argv
    sys.argv = ["beatkeeper", "preview", *args, "-o", "json"]
    try:
        main()
    finally:
        sys.argv = old
    return [datetime.fromisoformat(t) for t in json.loads(capsys.readouterr().out)]


@pytest.mark.parametrize("zone_name", ZONES)
@pytest.mark.parametrize(("expression", "cron_sets"), CASES, ids=[c[0] for c in CASES])
def test_preview_matches_minute_scan_across_transitions(
    zone_name: str, expression: str, cron_sets: CronSets, capsys: pytest.CaptureFixture[str]
) -> None:
    zone = ZoneInfo(zone_name)
    for transition in transitions(zone_name, 2011, 2012)[:3]:
        after = transition - timedelta(days=2)
        until = transition + timedelta(days=2)
        expected = cron_occurrences(cron_sets, zone, after, until)
        found = preview(
            "--cron", expression, "--timezone", zone_name,
            "--after", after.astimezone(UTC).isoformat(), "--count", str(len(expected)),
            capsys=capsys,
        )  # fmt: skip
        assert found == expected, f"{expression} in {zone_name} around {transition}"
        assert all(t.utcoffset() == t.astimezone(zone).utcoffset() for t in found)
