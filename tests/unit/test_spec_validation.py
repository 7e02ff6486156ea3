"""The Schedule validator: every field, every mistake named by its dotted path."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from beatkeeper.problems import SpecError
from beatkeeper.spec import validate_manifest

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
BASE: dict[str, Any] = {
    "apiVersion": "beatkeeper.io/v1alpha1",
    "kind": "Schedule",
    "metadata": {"name": "nightly-billing", "namespace": "billing"},
    "spec": {"task": "billing.tasks.charge", "cron": "0 2 * * *"},
}


def manifest(**spec: Any) -> dict[str, Any]:
    document = copy.deepcopy(BASE)
    document["spec"].update(spec)
    return {**document, "spec": {k: v for k, v in document["spec"].items() if v is not None}}


def problems(document: object) -> list[str]:
    with pytest.raises(SpecError) as caught:
        validate_manifest(document, now=NOW)
    return [str(p) for p in caught.value.problems]


def test_minimal_cron_schedule_is_valid_with_defaults() -> None:
    spec = validate_manifest(manifest(), now=NOW).manifest.spec
    assert spec.time_zone == "UTC"
    assert spec.concurrency_policy == "Allow"
    assert spec.missed_runs == "RunLatest"
    assert spec.retry.max_attempts == 1
    assert spec.retry.backoff.initial == timedelta(seconds=10)
    assert spec.history.succeeded == 100
    assert spec.suspend is False


def test_every_field_accepted_together() -> None:
    document = manifest(
        args=[1, "two", {"three": 3}],
        kwargs={"dry_run": True},
        timeZone="Europe/London",
        startTime="2026-01-01T09:00:00",
        endTime="2030-01-01T00:00:00Z",
        maxRuns=500,
        exclude={"dates": ["2026-12-25"], "months": [8]},
        jitter="30s",
        suspend=False,
        concurrencyPolicy="Forbid",
        startingDeadline="10m",
        missedRuns="RunAll",
        queue="billing",
        priority=5,
        expires="1h",
        timeLimit="15m",
        softTimeLimit="14m",
        retry={"maxAttempts": 3, "backoff": {"initial": "30s", "max": "10m", "multiplier": 3}},
        pauseAfterFailures=5,
        history={"succeeded": 10, "failed": 50},
    )
    spec = validate_manifest(document, now=NOW).manifest.spec
    assert spec.retry.backoff.max == timedelta(minutes=10)
    assert spec.start_time == datetime(2026, 1, 1, 9, 0)


def test_unknown_field_is_named_with_a_suggestion() -> None:
    assert problems(manifest(timezone="Europe/London")) == [
        "spec.timezone: unknown field (did you mean timeZone?)"
    ]


def test_unknown_nested_field_names_full_path() -> None:
    assert problems(manifest(retry={"maxAttempt": 3})) == [
        "spec.retry.maxAttempt: unknown field (did you mean maxAttempts?)"
    ]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"retry": {"maxAttempts": 0}}, "spec.retry.maxAttempts: must be at least 1, got 0"),
        ({"retry": {"maxAttempts": "3"}}, "spec.retry.maxAttempts: must be a whole number"),
        ({"priority": 10}, "spec.priority: must be at most 9, got 10"),
        ({"interval": "5 minutes"}, "spec.interval: '5 minutes' is not a duration"),
        ({"interval": 300}, "spec.interval: must be a duration such as 15m"),
        ({"jitter": "1m", "interval": "0s", "cron": None}, "spec.interval: must be longer than 0s"),
        ({"timeZone": "Europe/Londres"}, "spec.timeZone: 'Europe/Londres' is not an IANA"),
        ({"timeZone": "europe/london"}, "did you mean Europe/London?"),
        ({"concurrencyPolicy": "forbid"}, "spec.concurrencyPolicy: must be 'Allow', 'Forbid'"),
        ({"missedRuns": "All"}, "spec.missedRuns: must be 'RunLatest', 'RunAll' or 'Skip'"),
        ({"exclude": {"months": [13]}}, "spec.exclude.months[0]: must be at most 12, got 13"),
        ({"exclude": {"dates": ["2026-02-30"]}}, "spec.exclude.dates[0]: '2026-02-30' is not"),
        ({"startTime": "tomorrow"}, "spec.startTime: 'tomorrow' is not a time"),
        ({"at": "Christmas", "cron": None}, "spec.at: 'Christmas' is not a time"),
        ({"task": "rm -rf /"}, "spec.task: must be a Celery task name"),
        ({"task": ""}, "spec.task: must not be empty"),
        ({"queue": "bad queue"}, "spec.queue: must be a queue name"),
        ({"suspend": "yes"}, "spec.suspend: must be true or false"),
        ({"args": {"a": 1}}, "spec.args: must be a list"),
        ({"kwargs": [1]}, "spec.kwargs: must be a mapping"),
        ({"retry": {"backoff": {"initial": "2h"}}}, "spec.retry.backoff: initial must not be"),
        ({"retry": {"backoff": {"multiplier": 0.5}}}, "spec.retry.backoff.multiplier: must be at"),
        ({"history": {"failed": -1}}, "spec.history.failed: must be at least 0"),
        ({"timeLimit": "1m", "softTimeLimit": "2m"}, "spec.softTimeLimit: must be shorter"),
        ({"maxRuns": 0}, "spec.maxRuns: must be at least 1"),
        ({"pauseAfterFailures": 0}, "spec.pauseAfterFailures: must be at least 1"),
    ],
)
def test_bad_field_is_named_with_what_is_wrong(spec: dict[str, Any], expected: str) -> None:
    found = problems(manifest(**spec))
    assert any(expected in p for p in found), found


def test_missing_task_is_required() -> None:
    document = manifest()
    del document["spec"]["task"]
    assert problems(document) == ["spec.task: is required"]


@pytest.mark.parametrize(
    ("triggers", "found"),
    [
        ({"cron": None}, "found none"),
        ({"interval": "5m"}, "found cron and interval"),
        ({"rrule": "FREQ=DAILY", "at": "2027-01-01T00:00:00Z"}, "found cron and rrule and at"),
    ],
)
def test_exactly_one_trigger(triggers: dict[str, Any], found: str) -> None:
    assert problems(manifest(**triggers)) == [
        f"spec: exactly one of cron, interval, rrule, at is required ({found})"
    ]


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("apiVersion", "beatkeeper.io/v1", "apiVersion: must be 'beatkeeper.io/v1alpha1'"),
        ("kind", "CronJob", "kind: must be 'Schedule'"),
    ],
)
def test_api_version_and_kind(field: str, value: str, expected: str) -> None:
    document = manifest()
    document[field] = value
    assert any(expected in p for p in problems(document))


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ({"name": "Nightly_Billing"}, "metadata.name: must be a DNS-1123 subdomain"),
        ({"name": "a" * 254}, "metadata.name: is too long"),
        ({"name": "ok", "namespace": "Team.A"}, "metadata.namespace: must be a DNS-1123 label"),
        ({}, "metadata.name: is required"),
    ],
)
def test_metadata_name_rules(metadata: dict[str, Any], expected: str) -> None:
    document = manifest()
    document["metadata"] = metadata
    assert any(expected in p for p in problems(document))


def test_unrelated_metadata_and_status_from_kubectl_are_ignored() -> None:
    document = manifest()
    document["metadata"] |= {
        "resourceVersion": "12",
        "managedFields": [],
        "uid": "6f1c0a52-7d3e-4a8b-9c2d-1e5f4a3b2c10",
    }
    document["status"] = {"observedGeneration": 2}
    assert (
        validate_manifest(document, now=NOW).manifest.metadata.uid
        == "6f1c0a52-7d3e-4a8b-9c2d-1e5f4a3b2c10"
    )


def test_non_mapping_document_is_refused() -> None:
    assert problems(["not", "a", "mapping"]) == ["a Schedule must be a mapping, got a list"]


def test_all_problems_reported_at_once() -> None:
    found = problems(manifest(priority=12, queue="no spaces", typo=1))
    assert len(found) == 3


def test_when_it_runs_is_checked_even_when_another_field_is_wrong() -> None:
    # These checks need a valid spec: they run on the timing fields alone, in the same report.
    found = problems(manifest(priority=12, cron="61 * * * *"))
    assert found == [
        "spec.cron: minute field: 61 is out of range 0-59",
        "spec.priority: must be at most 9, got 12",
    ]
    found = problems(manifest(task="", interval="5m", timeZone="Mars/Olympus"))
    assert found == [
        "spec: exactly one of cron, interval, rrule, at is required (found cron and interval)",
        "spec.task: must not be empty",
        "spec.timeZone: 'Mars/Olympus' is not an IANA time zone name (e.g. UTC, Europe/London)",
    ]
    found = problems(manifest(task="", interval="5m"))
    assert found == [
        "spec: exactly one of cron, interval, rrule, at is required (found cron and interval)",
        "spec.task: must not be empty",
    ]
    found = problems({**manifest(args=["x" * 70_000]), "metadata": {"name": "Bad_Name"}})
    assert [problem.split(":")[0] for problem in found] == ["metadata.name", "spec"]
    assert found[1].startswith("spec: args and kwargs together are 70,")


def test_payload_limit_is_64_kib_of_json() -> None:
    assert validate_manifest(manifest(args=["x" * 60_000]), now=NOW)
    found = problems(manifest(args=["x" * 40_000], kwargs={"y": "z" * 40_000}))
    assert found[0].startswith("spec: args and kwargs together are 80,")


def test_non_json_values_in_args_are_named() -> None:
    found = problems(manifest(args=[1, datetime(2026, 1, 1)], kwargs={"x": float("nan")}))
    assert found == [
        "spec.args[1]: must be JSON (quote dates and times; no NaN or infinity)",
        "spec.kwargs.x: must be JSON (quote dates and times; no NaN or infinity)",
    ]


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"cron": "0 0 30 2 *"}, "spec.cron"),
        ({"cron": None, "rrule": "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30"}, "spec.rrule"),
    ],
)
def test_schedule_that_can_never_fire_is_an_error(spec: dict[str, Any], field: str) -> None:
    found = problems(manifest(**spec))
    assert len(found) == 1
    assert found[0].startswith(f"{field}: ")
    assert "never fires" in found[0] or "no" in found[0]


def test_exclusions_that_remove_every_occurrence_are_an_error() -> None:
    found = problems(manifest(cron="0 0 1 6 *", exclude={"months": [6]}))
    assert found == ["spec.cron: never fires within startTime, endTime and exclude"]


def test_bad_cron_names_the_field() -> None:
    found = problems(manifest(cron="61 * * * *"))
    assert len(found) == 1
    assert found[0].startswith("spec.cron: ")
    assert "61" in found[0]


def test_bad_rrule_names_the_field() -> None:
    found = problems(manifest(cron=None, rrule="FREQ=SOMETIMES"))
    assert found[0].startswith("spec.rrule: ")


def test_end_before_start_is_an_error() -> None:
    found = problems(manifest(startTime="2027-01-02T00:00:00Z", endTime="2027-01-01T00:00:00Z"))
    assert found == ["spec.endTime: must not be before startTime"]


def test_last_occurrence_already_past_is_a_warning_not_an_error() -> None:
    result = validate_manifest(manifest(cron=None, at="2026-01-01T00:00:00Z"), now=NOW)
    assert [w.path for w in result.warnings] == ["spec.at"]
    assert "already past" in result.warnings[0].message


def test_end_time_in_the_past_warns() -> None:
    result = validate_manifest(manifest(endTime="2026-06-01T00:00:00Z"), now=NOW)
    assert [str(w) for w in result.warnings] == [
        "spec.endTime: 2026-06-01T00:00:00+00:00 is already past: nothing will run"
    ]
