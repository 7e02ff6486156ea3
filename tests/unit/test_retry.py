"""Exponential backoff with full jitter: the ceiling grows, the wait is uniform below it."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from beatkeeper.retry import backoff_ceiling, next_delay
from beatkeeper.spec import Backoff

DEFAULT = Backoff()  # 10s initial, 1h max, x2


def backoff(initial: str, maximum: str, multiplier: float) -> Backoff:
    return Backoff.model_validate({"initial": initial, "max": maximum, "multiplier": multiplier})


def test_ceiling_starts_at_initial_and_doubles() -> None:
    ceilings = [backoff_ceiling(DEFAULT, attempt) for attempt in range(1, 6)]
    assert ceilings == [timedelta(seconds=s) for s in (10, 20, 40, 80, 160)]


def test_ceiling_stops_growing_at_max() -> None:
    assert backoff_ceiling(DEFAULT, 9) == timedelta(seconds=2560)
    assert backoff_ceiling(DEFAULT, 10) == timedelta(hours=1)
    assert backoff_ceiling(DEFAULT, 100) == timedelta(hours=1)


def test_huge_attempt_with_large_multiplier_does_not_overflow() -> None:
    assert backoff_ceiling(backoff("1s", "2h", 10.0), 100) == timedelta(hours=2)


def test_multiplier_one_is_a_constant_ceiling() -> None:
    steady = backoff("30s", "1h", 1.0)
    assert {backoff_ceiling(steady, n) for n in range(1, 20)} == {timedelta(seconds=30)}


def test_attempts_count_from_one() -> None:
    with pytest.raises(ValueError, match="count from 1"):
        backoff_ceiling(DEFAULT, 0)


def test_delay_is_the_ceiling_scaled_by_the_uniform_draw() -> None:
    assert next_delay(DEFAULT, 3, uniform=lambda: 0.0) == timedelta(0)
    assert next_delay(DEFAULT, 3, uniform=lambda: 0.5) == timedelta(seconds=20)
    assert next_delay(DEFAULT, 3, uniform=lambda: 0.999) < timedelta(seconds=40)


def test_full_jitter_spreads_waits_over_the_whole_window() -> None:
    draw = random.Random(7).random
    waits = [next_delay(DEFAULT, 2, uniform=draw).total_seconds() for _ in range(2000)]
    assert min(waits) < 1.0
    assert max(waits) > 19.0
    assert 9.0 < sum(waits) / len(waits) < 11.0  # uniform on [0, 20): mean 10


@given(
    attempt=st.integers(min_value=1, max_value=100),
    draw=st.floats(min_value=0.0, max_value=1.0, exclude_max=True),
    initial=st.integers(min_value=1, max_value=600),
    multiplier=st.floats(min_value=1.0, max_value=10.0),
)
def test_delay_always_within_zero_and_ceiling(
    attempt: int, draw: float, initial: int, multiplier: float
) -> None:
    policy = backoff(f"{initial}s", "1h", multiplier)
    delay = next_delay(policy, attempt, uniform=lambda: draw)
    assert timedelta(0) <= delay <= backoff_ceiling(policy, attempt) <= timedelta(hours=1)
