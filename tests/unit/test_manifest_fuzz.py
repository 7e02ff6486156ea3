"""Random manifests through `beatkeeper validate`: one clear line each, or success, quickly.

Generated documents mix the real fields with random keys, values of every JSON type (and
some YAML-only ones), deep nesting, text with control characters, NUL and lone
surrogates, huge and tiny numbers, times from year 1 to 9999, and cron and RRULE
fragments glued together at random. Each goes through the same path as the command (the
file is written as YAML, read back by `check_paths`) and through the command itself: exit
0 or 1, every problem one line, never a traceback, within a time bound.
"""

from __future__ import annotations

import os
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from beatkeeper.cli.validate import validate
from beatkeeper.manifests import check_paths
from beatkeeper.problems import SpecError
from beatkeeper.spec import validate_manifest

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
SECONDS_PER_MANIFEST = 3.0
# BEATKEEPER_TEST_EXAMPLES_SCALE=20 for a deep run, as for the recurrence properties.
EXAMPLES = max(1, int(150 * float(os.environ.get("BEATKEEPER_TEST_EXAMPLES_SCALE", "1"))))
FIELDS = (
    "task", "args", "kwargs", "cron", "interval", "rrule", "at", "timeZone", "startTime",
    "endTime", "maxRuns", "exclude", "jitter", "suspend", "concurrencyPolicy",
    "startingDeadline", "missedRuns", "queue", "priority", "expires", "timeLimit",
    "softTimeLimit", "retry", "pauseAfterFailures", "history",
)  # fmt: skip
CRON_PARTS = ("*", "*/5", "0", "-1", "L", "5W", "1-5", "MON-FRI", "JAN", "60", "?", "3#2", "")
RRULE_PARTS = (
    "FREQ=SECONDLY", "FREQ=MINUTELY", "FREQ=HOURLY", "FREQ=DAILY", "FREQ=WEEKLY",
    "FREQ=MONTHLY", "FREQ=YEARLY", "INTERVAL=2", "INTERVAL=99999999999999", "COUNT=3",
    "BYSETPOS=2", "BYSETPOS=-366", "BYSECOND=1", "BYMINUTE=0,30", "BYHOUR=5", "BYMONTH=2",
    "BYMONTHDAY=29", "BYMONTHDAY=-1", "BYDAY=MO", "BYDAY=-1FR", "BYYEARDAY=366",
    "BYWEEKNO=53", "WKST=SU", "UNTIL=20300101T000000Z", "DTSTART=20260101", "BYEASTER=0",
)  # fmt: skip
TIMES = (
    "0001-01-01T00:00:00Z", "9999-12-31T23:59Z", "2026-02-30T00:00:00", "2026-06-01T09:00",
    "1969-12-31T23:59:59-01:00", "8999-12-31T23:59:59+14:00", "2030-01-01", "soon",
)  # fmt: skip
DURATIONS = ("0s", "90s", "1h30m", "99999999999w", "520w", "1w1d", "5 minutes", "-1s", "")
ZONES = ("UTC", "Europe/London", "localtime", "right/UTC", "Factory", "Mars/Olympus", "utc")

texts = st.text(
    st.characters(codec=None, blacklist_categories=()) | st.sampled_from("\x00\r\n\x1b\ud800"),
    max_size=12,
)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | texts
    | st.sampled_from(TIMES + DURATIONS + ZONES)
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(texts | st.integers(0, 3), inner, max_size=4)
    ),
    max_leaves=20,
)
crons = st.lists(st.sampled_from(CRON_PARTS), min_size=1, max_size=7).map(" ".join)
rrules = st.lists(st.sampled_from(RRULE_PARTS), min_size=1, max_size=5).map(";".join)


def deep(depth: int) -> object:
    value: object = "leaf"
    for _ in range(depth):
        value = {"a": [value]}
    return value


@st.composite
def manifests(draw: st.DrawFn) -> dict[str, Any]:
    spec: dict[Any, Any] = {"task": draw(st.sampled_from(["app.tasks.run", "", "x y"]))}
    spec[draw(st.sampled_from(["cron", "rrule", "interval", "at"]))] = draw(
        crons | rrules | st.sampled_from(DURATIONS + TIMES)
    )
    for name in draw(st.lists(st.sampled_from(FIELDS) | texts, max_size=5)):
        spec[name] = draw(values | crons | rrules | st.sampled_from(TIMES + DURATIONS + ZONES))
    if draw(st.integers(0, 9)) == 0:
        spec["kwargs"] = {"tree": deep(draw(st.integers(60, 400)))}
    metadata: dict[str, Any] = {"name": draw(st.sampled_from(["nightly", "Bad_Name", ""]))}
    if draw(st.booleans()):
        metadata["uid"] = draw(
            st.sampled_from(["not-a-uuid", "6f1c0a52-7d3e-4a8b-9c2d-1e5f4a3b2c10"])
        )
    return {
        "apiVersion": "beatkeeper.io/v1alpha1",
        "kind": "Schedule",
        "metadata": metadata,
        "spec": spec,
    }


def assert_one_clear_line_each(lines: list[str]) -> None:
    for line in lines:
        assert line.strip(), "an empty problem"
        assert "\n" not in line, line
        assert "\r" not in line, line
        assert "Traceback" not in line, line


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(document=manifests())
def test_any_manifest_is_valid_or_one_clear_line_per_problem(document: dict[str, Any]) -> None:
    started = time.process_time()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "schedule.yaml"
        try:
            text = yaml.safe_dump(document, allow_unicode=False)
        except (yaml.YAMLError, RecursionError):
            text = "{}"  # a document PyYAML cannot write; checked directly below
        path.write_text(text)
        checked = check_paths([path], now=NOW)
        assert_one_clear_line_each([str(p) for _, p in checked.problems + checked.warnings])
        result = CliRunner().invoke(validate, ["-f", str(path)])
        assert result.exit_code in (0, 1), result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)
        assert_one_clear_line_each(result.output.splitlines())
    try:
        validate_manifest(document, now=NOW)
    except SpecError as error:
        assert_one_clear_line_each([str(p) for p in error.problems])
    assert time.process_time() - started < SECONDS_PER_MANIFEST
