"""`beatkeeper-operator` reads its arguments, and refuses bad ones (or bad settings) in one line.

The chart passes `operator.extraArgs` to it and runs it as a pod, where a traceback and a
retry loop would hide the mistake. The command runs as a subprocess, as the pod runs it;
none of these cases may reach a cluster or a database.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import kopf
import pytest
from beatkeeper_operator import options as command_line
from beatkeeper_operator.runtime import configure_kopf

from beatkeeper.settings import Settings

BIN = Path(sys.executable).parent
DATABASE_URL = "postgresql://beatkeeper@127.0.0.1:1/beatkeeper"


def _run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("BEATKEEPER_")}
    environ.update(env)
    return subprocess.run(
        [str(BIN / "beatkeeper-operator"), *args],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_help_prints_usage_and_starts_nothing() -> None:
    result = _run("--help")  # no database URL: nothing may need one
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: beatkeeper-operator")
    for option in ("--namespace", "--all-namespaces", "--liveness", "--verbose", "--quiet"):
        assert option in result.stdout
    assert "examples:" in result.stdout
    assert result.stderr == ""


@pytest.mark.parametrize(
    ("option", "expected"),
    [("--version", "beatkeeper-operator 0"), ("--help", "usage: beatkeeper-operator")],
)
def test_the_beatkeeper_operator_subcommand_passes_its_arguments_on(
    option: str, expected: str
) -> None:
    # The chart runs `beatkeeper operator` with operator.extraArgs appended.
    environ = {k: v for k, v in os.environ.items() if not k.startswith("BEATKEEPER_")}
    result = subprocess.run(
        [str(BIN / "beatkeeper"), "operator", option],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(expected)


def test_an_unknown_argument_is_one_line_and_status_2() -> None:
    line = _one_line(_run("--peering=default", BEATKEEPER_DATABASE_URL=DATABASE_URL))
    assert "unrecognized arguments: --peering=default" in line


@pytest.mark.parametrize(
    ("args", "mention"),
    [
        (["--namespace", "Team_A"], "'Team_A' is not a namespace name"),
        (["--liveness", "0.0.0.0:8080"], "--liveness must be an http URL"),
        (["-n", "team-a", "--all-namespaces"], "not allowed with argument"),
        (["--log-format", "xml"], "invalid choice: 'xml'"),
    ],
)
def test_a_malformed_argument_is_one_line_and_status_2(args: list[str], mention: str) -> None:
    assert mention in _one_line(_run(*args, BEATKEEPER_DATABASE_URL=DATABASE_URL))


@pytest.mark.parametrize(
    ("env", "mention"),
    [
        ({}, "BEATKEEPER_DATABASE_URL is not set"),
        ({"BEATKEEPER_DATABASE_URL": "mysql://db/beatkeeper"}, "BEATKEEPER_DATABASE_URL"),
        (
            {"BEATKEEPER_DATABASE_URL": "postgresql://u:secret@db:port/beatkeeper"},
            "BEATKEEPER_DATABASE_URL: the port after the host is not a number",
        ),
        (
            {"BEATKEEPER_DATABASE_URL": DATABASE_URL, "BEATKEEPER_LOG_LEVEL": "LOUD"},
            "BEATKEEPER_LOG_LEVEL",
        ),
        (
            {"BEATKEEPER_DATABASE_URL": DATABASE_URL, "BEATKEEPER_NAMESPACES": "Team_A"},
            "BEATKEEPER_NAMESPACES",
        ),
        (
            {"BEATKEEPER_DATABASE_URL": DATABASE_URL, "BEATKEEPER_POLICY_FILE": "/nonexistent"},
            "/nonexistent",
        ),
    ],
)
def test_a_bad_setting_is_one_line_and_status_2(env: dict[str, str], mention: str) -> None:
    line = _one_line(_run(**env))
    assert line.startswith("beatkeeper-operator: ")
    assert mention in line
    assert "secret" not in line, "the password is masked"


def test_namespace_options_override_the_settings() -> None:
    settings = Settings(database_url=DATABASE_URL, namespaces=("team-a",))
    parsed = command_line.parse(["-n", "team-b,team-c", "--namespace", "team-b"])
    assert command_line.apply(parsed, settings).namespaces == ("team-b", "team-c")
    everywhere = command_line.parse(["--all-namespaces"])
    assert command_line.apply(everywhere, settings).namespaces == ()
    assert command_line.apply(command_line.parse([]), settings).namespaces == ("team-a",)


def test_verbosity_and_format_options_override_the_settings() -> None:
    settings = Settings(database_url=DATABASE_URL, log_level="INFO", log_format="json")
    for args, level in ((["-v"], "DEBUG"), (["--debug"], "DEBUG"), (["-q"], "WARNING")):
        assert command_line.apply(command_line.parse(args), settings).log_level == level
    console = command_line.parse(["--log-format", "console"])
    assert command_line.apply(console, settings).log_format == "console"


def test_liveness_defaults_to_what_the_chart_probes() -> None:
    assert command_line.parse([]).liveness == "http://0.0.0.0:8080/healthz"
    assert command_line.parse(["--liveness", "http://0.0.0.0:9000/live"]).liveness == (
        "http://0.0.0.0:9000/live"
    )


def test_a_namespaced_operator_does_not_scan_the_cluster() -> None:
    # Cluster scanning watches CRDs and Namespaces cluster-wide: 403 under namespaced Roles.
    namespaced = kopf.OperatorSettings()
    configure_kopf(namespaced, namespaced=True)
    assert namespaced.scanning.disabled is True
    clusterwide = kopf.OperatorSettings()
    configure_kopf(clusterwide, namespaced=False)
    assert clusterwide.scanning.disabled is False
