"""The `beatkeeper` commands that need no database: validate, preview, crd."""

from __future__ import annotations

import json
import socket
from datetime import datetime
from pathlib import Path

import pytest

from beatkeeper.cli import cli

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "manifests" / "examples"


@pytest.fixture
def run(beatkeeper_cli):
    return beatkeeper_cli


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


GOOD = """\
apiVersion: beatkeeper.io/v1alpha1
kind: Schedule
metadata: {name: nightly}
spec: {task: app.tasks.nightly, cron: "0 2 * * *"}
"""


def test_validate_accepts_every_example(run) -> None:
    result = run("validate", "-f", str(EXAMPLES))
    assert result.code == 0, result.out + result.err
    assert result.out == ""
    assert "Schedule(s) valid" in result.err


def test_validate_reports_one_line_per_problem_with_file_and_document(run, tmp_path) -> None:
    bad = GOOD.replace('cron: "0 2 * * *"', 'cron: "0 2 * * *", priority: 11, timezone: UTC')
    path = write(tmp_path, "s.yaml", f"{GOOD}---\n{bad}")
    result = run("validate", "-f", str(path))
    assert result.code == 1
    assert result.out.splitlines() == [
        f"{path}#2: spec.priority: must be at most 9, got 11",
        f"{path}#2: spec.timezone: unknown field (did you mean timeZone?)",
    ]


def test_validate_names_the_yaml_line(run, tmp_path) -> None:
    path = write(tmp_path, "s.yaml", "apiVersion: beatkeeper.io/v1alpha1\nkind: [Schedule\n")
    result = run("validate", "-f", str(path))
    assert result.code == 1
    assert result.out.startswith(f"{path}: YAML syntax error at line ")


def test_validate_without_files_is_a_usage_error(run) -> None:
    result = run("validate")
    assert result.code == 2
    assert "Missing option '-f'" in result.err


def test_validate_missing_file(run, tmp_path) -> None:
    result = run("validate", "-f", str(tmp_path / "missing.yaml"))
    assert result.code == 1
    assert result.out == f"{tmp_path / 'missing.yaml'}: cannot read: no such file\n"


def test_validate_empty_folder_finds_no_schedule(run, tmp_path) -> None:
    result = run("validate", "-f", str(tmp_path))
    assert result.code == 1
    assert "no Schedule found" in result.err


POLICY = "default: {tasks: ['app.*']}\nnamespaces:\n  ops: {tasks: ['*']}\n"


def test_validate_applies_the_tenancy_policy_when_one_is_set(run, tmp_path, monkeypatch) -> None:
    purge = GOOD.replace("name: nightly", "name: purge").replace("app.tasks.nightly", "ops.purge")
    path = write(tmp_path, "s.yaml", f"{GOOD}---\n{purge}")
    monkeypatch.delenv("BEATKEEPER_POLICY_FILE", raising=False)
    assert run("validate", "-f", str(path)).code == 0  # no policy: every task allowed
    monkeypatch.setenv("BEATKEEPER_POLICY_FILE", str(write(tmp_path, "policy.yaml", POLICY)))
    result = run("validate", "-f", str(path))
    assert result.code == 1
    # In the words of the admission webhook, which refuses the same Schedule.
    assert result.out == f"{path}#2: spec.task: 'ops.purge' is not allowed here (allowed: app.*)\n"
    assert "1 problem(s); 1 Schedule(s) valid" in result.err
    elsewhere = write(
        tmp_path, "ops.yaml", purge.replace("{name: purge}", "{name: p, namespace: ops}")
    )
    assert run("validate", "-f", str(elsewhere)).code == 0


def test_validate_names_an_unreadable_policy_file(run, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("BEATKEEPER_POLICY_FILE", str(tmp_path / "missing.yaml"))
    result = run("validate", "-f", str(write(tmp_path, "s.yaml", GOOD)))
    assert (result.code, result.out) == (1, "")
    assert result.err.startswith(f"beatkeeper: error: cannot read the policy file {tmp_path}")


def test_preview_json_lists_instants_with_local_offset(run) -> None:
    result = run(
        "preview",
        "--cron",
        "30 1 * * *",
        "--timezone",
        "Europe/London",
        "--after",
        "2026-10-24T12:00:00Z",
        "--count",
        "3",
        "-o",
        "json",
    )
    assert result.code == 0, result.err
    assert json.loads(result.out) == [
        "2026-10-25T01:30:00+01:00",
        "2026-10-26T01:30:00+00:00",
        "2026-10-27T01:30:00+00:00",
    ]


def test_preview_is_strictly_after(run) -> None:
    result = run(
        "preview",
        "--interval",
        "1h",
        "--start",
        "2026-01-01T00:00:00Z",
        "--after",
        "2026-01-01T05:00:00Z",
        "--count",
        "1",
        "-o",
        "json",
    )
    assert json.loads(result.out) == ["2026-01-01T06:00:00+00:00"]


def test_preview_spring_forward_gap(run) -> None:
    result = run(
        "preview",
        "--cron",
        "30 2 * * *",
        "--timezone",
        "Europe/Berlin",
        "--after",
        "2026-03-28T12:00:00Z",
        "--count",
        "2",
        "-o",
        "json",
    )
    assert json.loads(result.out) == ["2026-03-29T03:30:00+02:00", "2026-03-30T02:30:00+02:00"]


def test_preview_table_says_a_time_in_the_gap_moved(run) -> None:
    result = run(
        "preview", "--cron", "30 2 * * *", "--timezone", "Europe/Berlin",
        "--after", "2026-03-28T12:00:00Z", "--count", "2",
    )  # fmt: skip
    assert result.code == 0, result.err
    assert "02:30 did not exist that day: moved to 03:30" in result.out


def test_preview_table_marks_dst_shift(run) -> None:
    result = run(
        "preview",
        "--cron",
        "0 9 * * *",
        "--timezone",
        "America/New_York",
        "--after",
        "2026-10-31T00:00:00Z",
        "--count",
        "3",
    )
    assert result.code == 0, result.err
    assert "UTC offset -04:00 -> -05:00 (EST)" in result.out
    assert "2026-11-01 14:00:00Z" in result.out
    assert "did not exist" not in result.out


def test_preview_from_manifest(run) -> None:
    result = run(
        "preview",
        "-f",
        str(EXAMPLES / "credits.yaml"),
        "--name",
        "credits-release-expired-holds",
        "--after",
        "2026-01-15T00:00:00Z",
        "--count",
        "2",
        "-o",
        "json",
    )
    assert json.loads(result.out) == ["2026-01-15T03:00:00+00:00", "2026-01-15T06:00:00+00:00"]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--cron", "61 * * * *"], 1, "--cron: "),
        (["--cron", "* * * * *", "--interval", "5m"], 2, "only one of"),
        ([], 2, "give -f FILE or one of"),
        (["--interval", "5 minutes"], 1, "--interval: '5 minutes' is not a duration"),
        (["--cron", "* * * * *", "--timezone", "Mars/Olympus"], 1, "--timezone: "),
        (["--cron", "* * * * *", "--after", "soon"], 2, "--after: 'soon' is not a time"),
        (["--cron", "* * * * *", "--count", "0"], 2, "Invalid value for '--count'"),
        (
            ["--cron", "* * * * *", "--after", "9999-12-31T23:59:00Z"],
            2,
            "--after: 9999-12-31T23:59:00Z is out of range",
        ),
        (["--rrule", "FREQ=HOURLY;BYSETPOS=2"], 1, "--rrule: never fires"),
    ],
)
def test_preview_errors_are_one_clear_line(run, args, code, message) -> None:
    result = run("preview", *args)
    assert result.code == code
    assert message in result.err
    assert "Traceback" not in result.err


@pytest.mark.parametrize(
    ("since", "message"),
    [
        ("99999999999w", "--since: '99999999999w' is longer than ten years"),
        ("0001-01-01T00:00:00Z", "--since: 0001-01-01T00:00:00Z is out of range"),
    ],
)
def test_runs_since_out_of_range_is_one_line_before_any_database(
    run, monkeypatch, since, message
) -> None:
    monkeypatch.setenv("BEATKEEPER_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    result = run("runs", "--since", since)
    assert result.code == 2
    assert message in result.err
    assert "Traceback" not in result.err


def test_preview_at_in_the_past_shows_nothing(run) -> None:
    result = run("preview", "--at", "2020-01-01T00:00:00Z", "-o", "json")
    assert result.code == 0
    assert json.loads(result.out) == []
    result = run("preview", "--at", "2020-01-01T00:00:00Z", "--after", "2026-01-01T00:00:00Z")
    assert result.code == 0
    assert result.out.strip() == "No occurrence after 2026-01-01 00:00:00Z"  # not an empty table
    assert "is already past" in result.err


def test_crd_prints_the_committed_crd(run) -> None:
    result = run("crd")
    assert result.out == (ROOT / "manifests/crds/schedules.beatkeeper.io.yaml").read_text()


def test_help_on_every_command_has_examples(run) -> None:
    # `operator` replaces the process with the operator's own command line, which would end
    # this test session: tests/unit/test_operator_command.py runs its --help as a subprocess.
    names = [name for name in cli.commands if name != "operator"]
    commands = [[name] for name in names] + [["runs", "list"], ["runs", "replay"]]
    for command in commands:
        result = run(*command, "--help")
        assert result.code == 0, command
        assert "Examples:" in result.out, command


def test_runs_help_shows_the_listing_options(run) -> None:
    result = run("runs", "--help")
    assert result.code == 0
    for option in ("--state", "--since", "--limit", "--output"):
        assert option in result.out


def test_preview_default_after_is_now(run) -> None:
    result = run("preview", "--interval", "1h", "--count", "1", "-o", "json")
    [first] = json.loads(result.out)
    assert datetime.fromisoformat(first) > datetime.now().astimezone()


def test_preview_rrule_without_start_fires_on_whole_minutes(run) -> None:
    result = run(
        "preview", "--rrule", "FREQ=DAILY;BYHOUR=9;BYMINUTE=0", "--count", "2", "-o", "json"
    )
    assert [datetime.fromisoformat(t).second for t in json.loads(result.out)] == [0, 0]


def test_dev_takes_state_dir_and_still_the_old_state_option(run, tmp_path) -> None:
    help_text = run("dev", "--help").out
    assert "--state-dir" in help_text
    assert "--state " not in help_text  # hidden: `runs --state` filters by run state
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        for option in ("--state-dir", "--state"):
            result = run("dev", "-f", str(EXAMPLES), option, str(tmp_path), "--flower-port", port)
            assert result.code == 1, result.err
            assert f"port {port} on 127.0.0.1 is in use" in result.err
            assert (tmp_path / "dev.lock").exists()  # the folder given was the one locked
