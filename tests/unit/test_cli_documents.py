"""Which documents the CLI reads as Schedules, and what it says about the others."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
CREDITS = ROOT / "manifests" / "examples" / "credits.yaml"

SCHEDULE = """\
apiVersion: {api}
kind: {kind}
metadata: {{name: {name}, namespace: {namespace}}}
spec: {{task: app.tasks.nightly, cron: "0 2 * * *"}}
"""


def schedule(
    name: str = "nightly",
    *,
    api: str = "beatkeeper.io/v1alpha1",
    kind: str = "Schedule",
    namespace: str = "team",
) -> str:
    return SCHEDULE.format(api=api, kind=kind, name=name, namespace=namespace)


@pytest.fixture
def run(beatkeeper_cli: Any) -> Any:
    return beatkeeper_cli


def test_a_schedule_of_another_api_is_named_with_its_api_version_and_kind(
    run: Any, tmp_path: Path
) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(schedule(api="batch/v1"))
    result = run("validate", "-f", str(path))
    assert result.code == 1
    assert result.out == (
        f"{path}: apiVersion: apiVersion: batch/v1, kind: Schedule is not a beatkeeper "
        "Schedule: write apiVersion: beatkeeper.io/v1alpha1\n"
    )
    assert "no Schedule found" not in result.err


def test_no_schedule_found_says_what_was_passed_over(run: Any, tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\n")
    result = run("validate", "-f", str(path))
    assert result.code == 1
    assert result.err.strip() == (
        f"no Schedule found (beatkeeper.io/v1alpha1 kind Schedule): {path} is apiVersion: v1, "
        "kind: ConfigMap"
    )


def test_apply_says_what_was_passed_over_too(run: Any, tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: nightly}\n")
    result = run("apply", "-f", str(path))
    assert result.code != 0
    assert "is apiVersion: batch/v1, kind: CronJob: nothing applied" in result.err


def test_preview_of_a_file_with_several_schedules_previews_each(run: Any) -> None:
    after = ["--after", "2026-01-15T00:00:00Z", "--count", "2", "-o", "json"]
    result = run("preview", "-f", str(CREDITS), *after)
    assert result.code == 0, result.err
    assert json.loads(result.out) == {
        "default/credits-release-expired-holds": [
            "2026-01-15T03:00:00+00:00",
            "2026-01-15T06:00:00+00:00",
        ],
        "default/credits-allocate-monthly": [
            "2026-02-01T00:00:00+00:00",
            "2026-03-01T00:00:00+00:00",
        ],
        "default/credits-settle-pending": [
            "2026-01-15T00:15:00+00:00",
            "2026-01-15T00:30:00+00:00",
        ],
        "default/credits-sync-usage": [
            "2026-01-15T00:10:00+00:00",
            "2026-01-15T00:20:00+00:00",
        ],
    }


def test_preview_table_of_several_schedules_titles_each(run: Any) -> None:
    result = run("preview", "-f", str(CREDITS), "--after", "2026-01-15T00:00:00Z", "--count", "1")
    assert result.code == 0, result.err
    assert "default/credits-release-expired-holds: Next 1 occurrence(s)" in result.out
    assert "default/credits-allocate-monthly: Next 1 occurrence(s)" in result.out


@pytest.mark.parametrize("name", ["credits-allocate-monthly", "default/credits-allocate-monthly"])
def test_preview_name_chooses_one_schedule_of_the_file(run: Any, name: str) -> None:
    after = ["--after", "2026-01-15T00:00:00Z", "--count", "1", "-o", "json"]
    result = run("preview", "-f", str(CREDITS), "--name", name, *after)
    assert json.loads(result.out) == ["2026-02-01T00:00:00+00:00"]


def test_preview_name_that_is_not_in_the_file_lists_those_that_are(run: Any) -> None:
    result = run("preview", "-f", str(CREDITS), "--name", "credits")
    assert result.code == 1
    assert result.err.strip() == (
        f"beatkeeper: error: --name credits: {CREDITS} has no such Schedule (it has "
        "default/credits-release-expired-holds, default/credits-allocate-monthly, "
        "default/credits-settle-pending, default/credits-sync-usage)"
    )


def test_preview_name_shared_by_two_namespaces_asks_for_the_namespace(
    run: Any, tmp_path: Path
) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(schedule(namespace="a") + "---\n" + schedule(namespace="b"))
    assert (
        run("preview", "-f", str(path), "--name", "nightly")
        .err.strip()
        .endswith("give NAMESPACE/NAME")
    )
    chosen = run("preview", "-f", str(path), "--name", "b/nightly", "-o", "json", "--count", "1")
    assert len(json.loads(chosen.out)) == 1


def test_preview_name_without_a_file_is_a_usage_error(run: Any) -> None:
    result = run("preview", "--cron", "* * * * *", "--name", "nightly")
    assert result.code == 2
    assert result.err.strip().endswith("--name chooses a Schedule of -f FILE")
