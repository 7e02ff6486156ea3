"""Durations: one spelling, read back exactly."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from beatkeeper.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("15m", 900), ("1h30m", 5400), ("2d", 172_800), ("1w", 604_800), ("0s", 0)],
)
def test_parses_units(text: str, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "5", "5 m", "1m1h", "1.5h", "-5m", "5min", "1y", "PT5M"])
def test_rejects_anything_else_with_an_example(text: str) -> None:
    with pytest.raises(ValueError, match=r"e\.g\. 90s, 15m, 1h30m"):
        parse_duration(text)


def test_rejects_more_than_ten_years() -> None:
    with pytest.raises(ValueError, match="longer than ten years"):
        parse_duration("600w")


@given(st.integers(min_value=0, max_value=10 * 365 * 86_400))
def test_format_reads_back(seconds: int) -> None:
    value = timedelta(seconds=seconds)
    assert parse_duration(format_duration(value)) == value
