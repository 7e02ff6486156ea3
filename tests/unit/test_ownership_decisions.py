"""Whether a delivered message may run its run, decided from plain values."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from beatkeeper.decisions.ownership import (
    MAX_WORKER_LOSSES,
    GiveUp,
    Message,
    Owner,
    RecordedRun,
    Refusal,
    Refused,
    TakeOver,
    mismatch,
    refusal,
    take_over,
)
from beatkeeper.states import RunState

RUN = uuid.uuid4()
SCHEDULE = uuid.uuid4()
DUE = datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
ME = Owner("celery@here", 10, "aaaaaaaaaaaa")
GONE = Owner("celery@there", 20, "bbbbbbbbbbbb")
MESSAGE = Message(RUN, "app.task", SCHEDULE, "team/report")


def recorded(
    state: RunState = RunState.RUNNING, owner: Owner | None = GONE, losses: int = 0
) -> RecordedRun:
    return RecordedRun(
        state=state.value,
        task="app.task",
        schedule_id=SCHEDULE,
        schedule="team/report",
        owner=owner,
        worker_losses=losses,
        due_at=DUE,
        early=False,
    )


@pytest.mark.parametrize(
    ("changed", "why"),
    [
        ({"task": "app.other"}, "the run is task app.task"),
        ({"schedule_id": uuid.uuid4()}, f"the run belongs to schedule team/report ({SCHEDULE})"),
        ({"schedule": "team/other"}, f"the run belongs to schedule team/report ({SCHEDULE})"),
    ],
    ids=["task", "schedule-id", "schedule-name"],
)
def test_a_message_for_something_else_than_its_run_does_not_match(
    changed: dict[str, object], why: str
) -> None:
    assert mismatch(dataclasses.replace(MESSAGE, **changed), recorded()) == why  # type: ignore[arg-type]


def test_a_message_for_a_run_not_due_yet_does_not_match() -> None:
    early = dataclasses.replace(recorded(RunState.PLANNED), early=True)
    assert mismatch(MESSAGE, early) == (
        "the run is planned, due at 2026-03-29T01:30:00+00:00: not published yet"
    )
    assert mismatch(MESSAGE, recorded()) is None


def test_refusals_before_asking_about_the_owner() -> None:
    foreign = dataclasses.replace(MESSAGE, task="app.other")
    assert refusal(MESSAGE, None, me=ME) == Refused(Refusal.MISSING, "does not exist")
    assert refusal(foreign, recorded(), me=ME) == Refused(
        Refusal.FOREIGN, "the run is task app.task"
    )
    assert refusal(MESSAGE, recorded(RunState.SUCCEEDED), me=ME) == Refused(
        Refusal.NOT_RUNNING, "is succeeded"
    )
    mine = refusal(MESSAGE, recorded(owner=ME), me=ME)
    assert mine == Refused(
        Refusal.OWNED, "is running on celery@here (pid 10, session aaaaaaaaaaaa)"
    )
    assert refusal(MESSAGE, recorded(), me=ME) is None


def test_a_live_owner_keeps_its_run() -> None:
    assert take_over(recorded(), owner_alive=True) == Refused(
        Refusal.OWNED, "is running on celery@there (pid 20, session bbbbbbbbbbbb)"
    )


def test_a_run_whose_owner_is_gone_is_taken_over_counting_the_loss() -> None:
    assert take_over(recorded(losses=1), owner_alive=False) == TakeOver(losses=2)


def test_a_run_handed_back_is_taken_without_counting_a_loss() -> None:
    assert take_over(recorded(owner=None, losses=1), owner_alive=False) == TakeOver(losses=1)


def test_a_run_that_killed_its_last_process_is_given_up() -> None:
    decided = take_over(recorded(losses=MAX_WORKER_LOSSES - 1), owner_alive=False)
    assert isinstance(decided, GiveUp)
    assert decided.losses == MAX_WORKER_LOSSES
    assert "(the last: celery@there (pid 20, session bbbbbbbbbbbb))" in decided.error


@given(losses=st.integers(min_value=0, max_value=10), handed_back=st.booleans())
def test_no_run_is_handed_to_a_process_past_the_limit(losses: int, handed_back: bool) -> None:
    decided = take_over(
        recorded(owner=None if handed_back else GONE, losses=losses), owner_alive=False
    )
    counted = losses + (not handed_back)
    if counted >= MAX_WORKER_LOSSES:
        assert isinstance(decided, GiveUp)
        assert decided.losses == counted
    else:
        assert decided == TakeOver(counted)
