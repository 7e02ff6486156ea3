"""The tenancy policy: globs, per-namespace rules, the file and its errors (no cluster)."""

from __future__ import annotations

from pathlib import Path

import pytest

from beatkeeper.policy import ALLOW_ALL, PolicyError, Rule, load_policy, parse_policy

POLICY = {
    "default": {"tasks": ["reports.*"], "queues": ["default", "reports-*"]},
    "namespaces": {"team-a": {"tasks": ["billing.*", "reports.weekly"], "queues": ["billing"]}},
}


def test_task_globs_match_case_sensitively():
    rule = Rule(tasks=("billing.*",), queues=("*",))
    assert rule.refusal(task="billing.tasks.charge", queue=None) is None
    refusal = rule.refusal(task="Billing.tasks.charge", queue=None)
    assert refusal is not None
    assert refusal.startswith("spec.task: 'Billing.tasks.charge' is not allowed here")
    assert "billing.*" in refusal


def test_queue_globs_and_the_default_queue():
    policy = parse_policy(POLICY)
    assert policy.refusal(namespace="ops", task="reports.daily", queue="reports-eu") is None
    assert policy.refusal(namespace="ops", task="reports.daily", queue=None) is None
    refusal = policy.refusal(namespace="ops", task="reports.daily", queue="billing")
    assert refusal is not None
    assert refusal.startswith("spec.queue: 'billing'")


def test_a_namespace_entry_replaces_the_default():
    policy = parse_policy(POLICY)
    assert policy.refusal(namespace="team-a", task="billing.tasks.charge", queue="billing") is None
    # team-a does not inherit the default's reports.* nor its queues.
    assert policy.refusal(namespace="team-a", task="reports.daily", queue=None) is not None
    assert policy.refusal(namespace="team-a", task="reports.weekly", queue="default") is not None
    assert policy.refusal(namespace="team-b", task="billing.tasks.charge", queue=None) is not None


def test_a_namespace_entry_without_queues_allows_every_queue():
    policy = parse_policy({"namespaces": {"team-a": {"tasks": ["billing.*"]}}})
    assert policy.refusal(namespace="team-a", task="billing.x", queue="anything") is None


def test_no_file_or_an_empty_file_allows_everything(tmp_path: Path):
    assert load_policy(None) is ALLOW_ALL
    empty = tmp_path / "policy.yaml"
    empty.write_text("", encoding="utf-8")
    assert load_policy(str(empty)) is ALLOW_ALL
    assert ALLOW_ALL.refusal(namespace="any", task="any.task", queue="any-queue") is None


def test_a_policy_file_is_read(tmp_path: Path):
    path = tmp_path / "policy.yaml"
    path.write_text(
        "default: {tasks: ['reports.*']}\nnamespaces:\n  team-a: {tasks: ['billing.*']}\n",
        encoding="utf-8",
    )
    policy = load_policy(str(path))
    assert policy.rule_for("team-a").tasks == ("billing.*",)
    assert policy.rule_for("elsewhere").tasks == ("reports.*",)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[a, b]", "must be a mapping with 'default' and 'namespaces'"),
        ("defaults: {}", "unknown key 'defaults'"),
        ("default: {task: ['x']}", "default: unknown key 'task'"),
        ("default: {tasks: 'billing.*'}", "default.tasks: must be a list of glob strings"),
        ("namespaces: [team-a]", "namespaces must map a namespace name to a rule"),
        ("namespaces: {team-a: [x]}", "namespaces.team-a: must be a mapping"),
        ("default: {tasks: [1]}", "default.tasks: must be a list of glob strings"),
        ("default: {tasks: [", "cannot read the policy file"),
    ],
)
def test_a_bad_file_is_a_policy_error_naming_the_problem(tmp_path: Path, text: str, problem: str):
    path = tmp_path / "policy.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(PolicyError) as caught:
        load_policy(str(path))
    assert problem in str(caught.value)
    assert str(path) in str(caught.value)


def test_a_missing_file_is_a_policy_error(tmp_path: Path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(PolicyError, match=r"cannot read the policy file .*nope\.yaml"):
        load_policy(str(missing))
