"""Hostile or careless manifests: each is one clear line naming the field, quickly."""

from __future__ import annotations

import copy
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from beatkeeper.manifests import check_paths, parse_documents
from beatkeeper.problems import SpecError
from beatkeeper.spec import validate_manifest

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
BASE: dict[str, Any] = {
    "apiVersion": "beatkeeper.io/v1alpha1",
    "kind": "Schedule",
    "metadata": {"name": "nightly", "namespace": "billing"},
    "spec": {"task": "billing.tasks.charge", "cron": "0 2 * * *"},
}
HEADER = "apiVersion: beatkeeper.io/v1alpha1\nkind: Schedule\nmetadata: {name: %s}\n"


def problems(**spec: Any) -> list[str]:
    document = copy.deepcopy(BASE)
    document["spec"].update(spec)
    with pytest.raises(SpecError) as caught:
        validate_manifest(document, now=NOW)
    return [str(p) for p in caught.value.problems]


def nested(depth: int) -> object:
    value: object = "leaf"
    for _ in range(depth):
        value = [value]
    return value


def test_yaml_anchor_bomb_is_refused_within_a_second(tmp_path: Path) -> None:
    levels = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for name, previous in zip("bcdefg", "abcdef", strict=True):
        levels.append(f"{name}: &{name} [" + ",".join([f"*{previous}"] * 9) + "]")
    body = "spec:\n  task: t\n  cron: '* * * * *'\n  kwargs:\n" + "".join(
        f"    {line}\n" for line in levels
    )
    path = tmp_path / "bomb.yaml"
    path.write_text(HEADER % "bomb" + body)
    started = time.process_time()
    checked = check_paths([path], now=NOW)
    assert time.process_time() - started < 1.0
    assert [str(p) for _, p in checked.problems] == [
        "the document holds more than 100,000 values (YAML aliases count each time)"
    ]
    assert checked.problems[0][0] == str(path)


def test_many_aliases_are_refused_by_the_loader() -> None:
    aliases = ",".join(["*x"] * 101)
    [document] = parse_documents(HEADER % "a" + f"spec: {{x: &x 1, y: [{aliases}]}}\n", "f.yaml")
    assert document.problem is not None
    assert "more than 100 aliases" in document.problem.message


def test_yaml_nested_hundreds_deep_is_refused_before_recursion() -> None:
    text = HEADER % "deep" + "spec: {kwargs: {a: " + "[" * 400 + "]" * 400 + "}}\n"
    [document] = parse_documents(text, "deep.yaml")
    assert document.problem is not None
    assert document.problem.message.startswith("YAML refused at line 4")
    assert "nested deeper than 72 levels" in document.problem.message


def test_resource_nested_hundreds_deep_names_the_path() -> None:
    assert problems(kwargs={"a": nested(2000)}) == [
        "spec.kwargs.a" + "[0]" * 62 + ": is nested deeper than 64 levels"
    ]


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        (
            {"a": "x\x00y"},
            "spec.kwargs.a: contains a NUL character (\\x00), which cannot be stored",
        ),
        (
            {"a": ["ok", "x\ud800"]},
            "spec.kwargs.a[1]: contains a lone surrogate ('\\ud800'), which is not valid "
            "Unicode text",
        ),
        (
            {"k\x00": 1},
            "spec.kwargs['k\\x00']: contains a NUL character (\\x00), which cannot be stored",
        ),
        ({1: 2}, "spec.kwargs: keys must be strings, got 1 (quote it)"),
    ],
)
def test_payload_that_postgresql_cannot_store_is_refused(
    kwargs: dict[Any, Any], expected: str
) -> None:
    assert problems(kwargs=kwargs) == [expected]


def test_uid_must_be_a_uuid() -> None:
    document = copy.deepcopy(BASE)
    document["metadata"]["uid"] = "not-a-uuid"
    with pytest.raises(SpecError) as caught:
        validate_manifest(document, now=NOW)
    assert str(caught.value).startswith("metadata.uid: 'not-a-uuid' is not a UUID")


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            {"startTime": "0001-01-01T00:00:00Z"},
            "spec.startTime: 0001-01-01T00:00:00Z is out of range: times must lie between "
            "1970-01-01 and 9000-01-01",
        ),
        ({"endTime": "9999-12-31T23:59Z"}, "spec.endTime: 9999-12-31T23:59Z is out of range"),
        (
            {"cron": None, "at": "9999-12-31T23:59:00Z"},
            "spec.at: 9999-12-31T23:59:00Z is out of range",
        ),
        (
            {"cron": None, "interval": "99999999999w"},
            "spec.interval: '99999999999w' is longer than ten years",
        ),
        (
            {"cron": None, "rrule": "FREQ=DAILY;INTERVAL=99999999999999"},
            "spec.rrule: rrule INTERVAL: 99999999999999 is more than 36,525",
        ),
    ],
)
def test_out_of_range_times_and_durations_are_one_line(spec: dict[str, Any], expected: str) -> None:
    document = copy.deepcopy(BASE)
    document["spec"].update(spec)
    document["spec"] = {k: v for k, v in document["spec"].items() if v is not None}
    with pytest.raises(SpecError) as caught:
        validate_manifest(document, now=NOW)
    [found] = [str(p) for p in caught.value.problems]
    assert found.startswith(expected)


def test_control_characters_in_keys_are_escaped() -> None:
    [found] = problems(**{"x\r\x1b[2Kspec.cron: valid": 1})
    assert found == "spec['x\\r\\x1b[2Kspec.cron: valid']: unknown field"
    assert "\r" not in found
    assert "\x1b" not in found


@pytest.mark.parametrize("zone", ["localtime", "posixrules", "right/UTC", "posix/UTC", "Factory"])
def test_host_dependent_zones_are_refused(zone: str) -> None:
    [found] = problems(timeZone=zone)
    assert found.startswith(f"spec.timeZone: {zone!r} depends on the host")


@pytest.mark.parametrize(
    ("cron", "expected"),
    [
        ("0 0 -1 * *", "spec.cron: day-of-month field: -1 is not a valid day-of-month"),
        ("0 0 L * *", "spec.cron: day-of-month field: 'L' is Quartz syntax, not cron;"),
        ("0 0 3- * *", "spec.cron: day-of-month field: range '3-' needs a number on each side"),
    ],
)
def test_cron_mistakes_read_well(cron: str, expected: str) -> None:
    [found] = problems(cron=cron)
    assert found.startswith(expected)


def test_jitter_longer_than_the_interval_is_refused() -> None:
    assert problems(cron=None, interval="1m", jitter="1h") == [
        "spec: jitter must be shorter than interval"
    ]


def test_duplicate_names_in_one_file_name_both_documents(tmp_path: Path) -> None:
    spec = "spec: {task: t, cron: '* * * * *'}\n"
    path = tmp_path / "two.yaml"
    path.write_text(HEADER % "same" + spec + "---\n" + HEADER % "same" + spec)
    checked = check_paths([path], now=NOW)
    assert [(s, str(p)) for s, p in checked.problems] == [
        (f"{path}#2", f"metadata.name: Schedule default/same is also defined in {path}#1")
    ]


def test_unquoted_impossible_date_is_one_line() -> None:
    [document] = parse_documents(HEADER % "a" + "spec: {at: 2026-02-30T00:00:00Z}\n", "d.yaml")
    assert document.problem is not None
    assert document.problem.message.startswith("YAML value cannot be read")


@pytest.mark.parametrize("trigger", [{"cron": "0 0 1 1 *"}, {"cron": "* * * * * *"}])
def test_large_max_runs_starting_later_costs_nothing_to_validate(trigger: dict[str, str]) -> None:
    document = copy.deepcopy(BASE)
    document["spec"] = {"task": "t", "maxRuns": 100_000, **trigger}
    started = time.process_time()
    assert validate_manifest(document, now=NOW).warnings == []
    assert time.process_time() - started < 0.5


def test_max_runs_already_used_up_is_a_warning() -> None:
    document = copy.deepcopy(BASE)
    document["spec"] |= {"maxRuns": 3, "startTime": "2026-01-01T00:00:00Z"}
    [warning] = validate_manifest(document, now=NOW).warnings
    assert (
        str(warning) == "spec.cron: the last occurrence (2026-01-03T02:00:00+00:00) is already past"
    )
