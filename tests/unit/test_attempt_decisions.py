"""What a failed attempt becomes, decided from plain values: retry, dead, or stays failed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from beatkeeper.decisions.attempts import FailedAttempt, after_failure, pause_reason, worker_lost
from beatkeeper.spec import Backoff
from beatkeeper.states import RunState

NOW = datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
DEFAULT = Backoff()  # 10s initial, 1h max, x2


def failed(attempt: int, max_attempts: int, pause_after: int | None = None) -> FailedAttempt:
    return FailedAttempt(attempt, max_attempts, DEFAULT, pause_after)


def test_an_attempt_with_attempts_left_is_retried_within_its_backoff() -> None:
    decided = after_failure(failed(2, 3), now=NOW, uniform=lambda: 0.5)
    assert (decided.state, decided.due_at) == (RunState.RETRYING, NOW + timedelta(seconds=10))
    assert not decided.final


def test_the_last_attempt_of_a_retried_run_makes_it_dead() -> None:
    decided = after_failure(failed(3, 3), now=NOW)
    assert (decided.state, decided.due_at, decided.final) == (RunState.DEAD, None, True)


def test_a_run_without_retries_stays_failed() -> None:
    decided = after_failure(failed(1, 1), now=NOW)
    assert (decided.state, decided.due_at, decided.final) == (RunState.FAILED, None, True)


@given(
    max_attempts=st.integers(min_value=1, max_value=20),
    attempt=st.integers(min_value=1, max_value=25),
    uniform=st.floats(min_value=0.0, max_value=0.999999),
)
def test_a_retry_is_due_no_earlier_than_now_and_no_later_than_the_cap(
    max_attempts: int, attempt: int, uniform: float
) -> None:
    decided = after_failure(failed(attempt, max_attempts), now=NOW, uniform=lambda: uniform)
    if attempt < max_attempts:
        assert decided.state is RunState.RETRYING
        assert decided.due_at is not None
        assert NOW <= decided.due_at <= NOW + DEFAULT.max
    else:
        assert decided.state is (RunState.DEAD if max_attempts > 1 else RunState.FAILED)
        assert decided.due_at is None


def test_a_schedule_pauses_at_its_limit_of_failures_in_a_row() -> None:
    assert pause_reason(2, 3) is None
    assert pause_reason(3, 3) == "paused after 3 consecutive failed runs (pauseAfterFailures: 3)"
    assert pause_reason(4, 3) is not None  # paused by hand meanwhile and resumed: still over
    assert pause_reason(100, None) is None


def test_a_run_that_killed_its_workers_fails_naming_the_last() -> None:
    error = worker_lost(3, "celery@h (pid 7, session abc)")
    assert error.startswith("WorkerLost: 3 worker processes died running this run")
    assert "(the last: celery@h (pid 7, session abc))" in error
