"""The run state machine: the table in the module docstring is the table the code enforces."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

from beatkeeper import states
from beatkeeper.states import (
    ACTIVE,
    FINAL,
    TRANSITIONS,
    RunState,
    can_transition,
    describe_transition,
    sources_for,
    targets_from,
)

S = RunState

EXPECTED = {
    S.PLANNED: {S.ENQUEUED, S.RUNNING, S.SKIPPED, S.MISSED, S.EXPIRED, S.CANCELLED},
    S.ENQUEUED: {S.RUNNING, S.MISSED, S.EXPIRED, S.CANCELLED, S.FAILED},
    S.RUNNING: {S.SUCCEEDED, S.FAILED, S.CANCELLED},
    S.FAILED: {S.RETRYING, S.DEAD},
    S.RETRYING: {S.ENQUEUED, S.RUNNING, S.CANCELLED},
}


def _documented_table() -> dict[RunState, set[RunState]]:
    """Parse the ``source → a | b`` lines of the states module docstring."""
    table: dict[RunState, set[RunState]] = {}
    for line in (states.__doc__ or "").splitlines():
        match = re.fullmatch(r"\s+(\w+)\s+→\s+([\w |]+)", line)
        if match:
            table[RunState(match[1])] = {RunState(s.strip()) for s in match[2].split("|")}
    return table


def test_state_values_are_the_stored_words() -> None:
    assert [s.value for s in RunState] == [
        "planned",
        "enqueued",
        "running",
        "succeeded",
        "failed",
        "retrying",
        "dead",
        "skipped",
        "missed",
        "expired",
        "cancelled",
    ]


def test_transition_table_is_the_documented_one() -> None:
    assert _documented_table() == EXPECTED
    assert {src: set(dst) for src, dst in TRANSITIONS.items() if dst} == EXPECTED


def test_every_state_has_an_entry_and_the_rest_lead_nowhere() -> None:
    assert set(TRANSITIONS) == set(RunState)
    for state in set(RunState) - set(EXPECTED):
        assert targets_from(state) == frozenset()


@pytest.mark.parametrize("source", list(RunState))
@pytest.mark.parametrize("target", list(RunState))
def test_can_transition_follows_the_table(source: RunState, target: RunState) -> None:
    assert can_transition(source, target) is (target in EXPECTED.get(source, set()))


@pytest.mark.parametrize("target", list(RunState))
def test_sources_for_inverts_the_table(target: RunState) -> None:
    expected = {src for src, targets in EXPECTED.items() if target in targets}
    assert sources_for(target) == expected


def test_nothing_moves_back_to_planned() -> None:
    assert sources_for(S.PLANNED) == frozenset()


def test_no_state_moves_to_itself() -> None:
    assert not any(can_transition(s, s) for s in RunState)


def test_active_states_hold_a_schedules_slot() -> None:
    assert {S.ENQUEUED, S.RUNNING, S.RETRYING} == ACTIVE


def test_final_states() -> None:
    assert {S.SUCCEEDED, S.FAILED, S.DEAD, S.SKIPPED, S.MISSED, S.EXPIRED, S.CANCELLED} == FINAL
    assert not ACTIVE & FINAL
    assert S.PLANNED not in ACTIVE | FINAL


def test_failed_is_the_only_final_state_that_can_move_on() -> None:
    movable_finals = {s for s in FINAL if targets_from(s)}
    assert movable_finals == {S.FAILED}
    assert targets_from(S.FAILED) == {S.RETRYING, S.DEAD}


def test_a_retry_goes_back_to_enqueued() -> None:
    assert can_transition(S.FAILED, S.RETRYING)
    assert can_transition(S.RETRYING, S.ENQUEUED)


def test_a_worker_may_start_a_run_before_beat_records_it_enqueued() -> None:
    # Beat publishes, then records enqueued: a fast worker can get there first.
    assert can_transition(S.PLANNED, S.RUNNING)
    assert can_transition(S.RETRYING, S.RUNNING)
    # ...and Beat's late enqueued then changes nothing: running never goes back.
    assert not can_transition(S.RUNNING, S.ENQUEUED)


def test_describe_a_legal_transition() -> None:
    assert describe_transition(S.PLANNED, S.ENQUEUED) == "planned → enqueued is a legal transition"


def test_describe_leaving_a_final_state() -> None:
    assert describe_transition(S.SUCCEEDED, S.RUNNING) == (
        "succeeded is a final state: a succeeded run never changes again"
    )


def test_describe_an_illegal_transition_names_the_allowed_ones() -> None:
    assert describe_transition(S.RUNNING, S.ENQUEUED) == (
        "running → enqueued is not a transition: enqueued is reached from planned, retrying, "
        "and running moves on only to cancelled, failed, succeeded"
    )


def test_describe_moving_to_planned() -> None:
    message = describe_transition(S.ENQUEUED, S.PLANNED)
    assert "planned is reached from nothing (runs are born in it)" in message


def test_the_module_imports_only_the_standard_library() -> None:
    tree = ast.parse(Path(states.__file__).read_text())
    imported = {
        (node.module or "") if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    roots = {name.split(".")[0] for name in imported}
    assert roots <= set(sys.stdlib_module_names) | {"__future__"}
