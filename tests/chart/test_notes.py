"""NOTES.txt tells the user how to reach Flower, log in, and apply a first Schedule."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from chart_render import CHART, NAMESPACE, RELEASE, run_helm, values_args


def _notes(helm: Path, scenario: str) -> str:
    # A client-side dry run renders NOTES.txt (helm template does not) and needs no cluster.
    result = run_helm(
        helm, "install", RELEASE, str(CHART), "--namespace", NAMESPACE, "--dry-run=client",
        *values_args(scenario),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout.split("NOTES:", 1)[1]


@pytest.fixture(scope="module")
def default_notes(helm: Path) -> str:
    return _notes(helm, "default")


def test_notes_port_forward_flower_and_read_the_generated_password(default_notes: str) -> None:
    assert "port-forward service/bk-beatkeeper-flower 5555:5555" in default_notes
    assert "http://127.0.0.1:5555/flower/" in default_notes
    assert (
        "get secret bk-beatkeeper-flower -o jsonpath='{.data.password}' | base64 -d"
        in default_notes
    )


def test_notes_apply_a_first_schedule(default_notes: str) -> None:
    assert "kind: Schedule" in default_notes
    assert "task: beatkeeper.noop" in default_notes
    assert "helm test bk --namespace beatkeeper" in default_notes


def test_notes_give_the_ingress_url_with_tls(helm: Path) -> None:
    notes = _notes(helm, "ingress-tls-values")
    assert "https://ops.example.com/flower/" in notes
    assert "port-forward" not in notes


@pytest.mark.parametrize("scenario", ["default", "namespaced-operator-values", "values-kind"])
def test_every_command_in_the_notes_names_its_namespace(helm: Path, scenario: str) -> None:
    # Copied into a shell whose context points elsewhere, a command must still hit the release.
    commands = [
        line.strip()
        for line in _notes(helm, scenario).splitlines()
        if line.strip().startswith(("kubectl", "helm", "cat <<"))
    ]
    assert len(commands) >= 5, commands
    for command in commands:
        assert re.search(r"(--namespace|-n) [a-z0-9-]+( |$)", command), command
    if scenario == "namespaced-operator-values":
        assert "kubectl --namespace team-a describe schedule hello" in "\n".join(commands)
