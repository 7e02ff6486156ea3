"""The core's tenancy policy: the per-run decision Beat and the worker make, and the line
`beatkeeper apply` and `dev` print, both naming the policy file."""

from __future__ import annotations

from pathlib import Path

from beatkeeper.policy import ALLOW_ALL, load_policy
from beatkeeper.settings import Settings

POLICY = """\
default: {tasks: ["examples.*"], queues: ["celery"]}
namespaces:
  team-a: {tasks: ["*"]}
"""


def test_a_forbidden_run_names_task_namespace_and_file(tmp_path: Path):
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY, encoding="utf-8")
    policy = load_policy(str(path))
    assert policy.forbids(namespace="default", task="beatkeeper.noop") == (
        f"task beatkeeper.noop is not allowed in namespace default by the tenancy policy ({path})"
    )
    assert policy.allows(namespace="default", task="examples.hello")
    assert policy.allows(namespace="team-a", task="beatkeeper.noop")
    # Decided once, then a lookup: the same answer the second time.
    assert not policy.allows(namespace="default", task="beatkeeper.noop")


def test_a_forbidden_schedule_is_one_line_with_what_is_allowed(tmp_path: Path):
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY, encoding="utf-8")
    policy = load_policy(str(path))
    refused = policy.refuses_schedule(namespace="default", task="beatkeeper.noop", queue=None)
    assert refused is not None
    assert "\n" not in refused
    assert refused.endswith("(allowed: examples.*)")
    queue = policy.refuses_schedule(namespace="default", task="examples.hello", queue="bulk")
    assert queue == (
        f"queue bulk is not allowed in namespace default by the tenancy policy ({path}) "
        "(allowed: celery)"
    )
    assert policy.refuses_schedule(namespace="team-a", task="x.y", queue=None) is None


def test_no_policy_allows_every_run():
    assert ALLOW_ALL.allows(namespace="any", task="any.task")


def test_the_settings_name_the_policy_file():
    assert Settings.from_env({"BEATKEEPER_POLICY_FILE": "/etc/p.yaml"}).policy_file == "/etc/p.yaml"
    assert Settings.from_env({"BEATKEEPER_POLICY_FILE": " "}).policy_file is None
