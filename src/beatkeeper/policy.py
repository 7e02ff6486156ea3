"""The tenancy policy: which task names and queues a Schedule in each namespace may use.

One policy for every component a run can start by: the operator and its admission webhook,
`beatkeeper apply` and `beatkeeper dev`, Beat (a forbidden run is not published) and the
worker (a forbidden message is not executed). Each reads it once at start-up from the YAML
file named by ``BEATKEEPER_POLICY_FILE`` (``Settings.policy_file``)::

    default: {tasks: ["*"], queues: ["*"]}
    namespaces:
      team-a: {tasks: ["billing.*"], queues: ["billing"]}

A namespace listed under ``namespaces`` gets exactly its own entry (it does not inherit
``default``); every other namespace gets ``default``. No file, or no ``default``, allows
everything. Only the operator's own file decides: nothing a namespace's labels or
annotations say can widen it. Patterns are shell globs (``fnmatch``, case-sensitive).
A Schedule without ``queue`` uses Celery's default queue, which is always allowed.

``Policy.forbids`` is the per-run decision Beat and the worker make: a dict lookup once a
(namespace, task) pair has been decided. Pure apart from ``load_policy`` reading one file;
no Kubernetes, no database, no Celery.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import yaml

__all__ = ["ALLOW_ALL", "Policy", "PolicyError", "Rule", "load_policy", "parse_policy"]


class PolicyError(ValueError):
    """The policy file cannot be used; the message names the file and the entry."""


@dataclass(frozen=True)
class Rule:
    """The task-name and queue globs one namespace may use."""

    tasks: tuple[str, ...] = ("*",)
    queues: tuple[str, ...] = ("*",)

    def refusal(self, *, task: str, queue: str | None) -> str | None:
        """Why ``task`` on ``queue`` is not allowed here, or None when it is."""
        if not any(fnmatchcase(task, glob) for glob in self.tasks):
            return f"spec.task: {task!r} is not allowed here (allowed: {_show(self.tasks)})"
        if queue is not None and not any(fnmatchcase(queue, glob) for glob in self.queues):
            return f"spec.queue: {queue!r} is not allowed here (allowed: {_show(self.queues)})"
        return None


@dataclass(frozen=True)
class Policy:
    """A rule per namespace, with a default for the rest."""

    default: Rule = field(default_factory=Rule)
    namespaces: dict[str, Rule] = field(default_factory=dict)
    #: The file it was read from, named in every refusal; None: no file (allow everything).
    source: str | None = None
    _verdicts: dict[tuple[str, str], str | None] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def rule_for(self, namespace: str) -> Rule:
        return self.namespaces.get(namespace, self.default)

    def refusal(self, *, namespace: str, task: str, queue: str | None) -> str | None:
        """Why a Schedule in ``namespace`` may not use ``task``/``queue``; None if it may."""
        return self.rule_for(namespace).refusal(task=task, queue=queue)

    def forbids(self, *, namespace: str, task: str) -> str | None:
        """Why a run of ``task`` in ``namespace`` must not start; None when it may.

        Decided once per (namespace, task) pair, then looked up: this is on Beat's hot path.
        """
        key = (namespace, task)
        try:
            return self._verdicts[key]
        except KeyError:
            pass
        rule = self.rule_for(namespace)
        verdict = None
        if not any(fnmatchcase(task, glob) for glob in rule.tasks):
            verdict = (
                f"task {task} is not allowed in namespace {namespace} "
                f"by the tenancy policy ({self.source or 'policy'})"
            )
        self._verdicts[key] = verdict
        return verdict

    def allows(self, *, namespace: str, task: str) -> bool:
        """Whether a run of ``task`` may start in ``namespace``."""
        return self.forbids(namespace=namespace, task=task) is None

    def refuses_schedule(self, *, namespace: str, task: str, queue: str | None) -> str | None:
        """One line saying why a Schedule may not be applied here (namespace, task or queue
        and the policy file); None when it may. What `beatkeeper apply` and `dev` print."""
        forbidden = self.forbids(namespace=namespace, task=task)
        if forbidden is not None:
            return f"{forbidden} (allowed: {_show(self.rule_for(namespace).tasks)})"
        rule = self.rule_for(namespace)
        if queue is not None and not any(fnmatchcase(queue, glob) for glob in rule.queues):
            return (
                f"queue {queue} is not allowed in namespace {namespace} by the tenancy policy "
                f"({self.source or 'policy'}) (allowed: {_show(rule.queues)})"
            )
        return None


ALLOW_ALL = Policy()


def load_policy(path: str | None) -> Policy:
    """The policy in the YAML file at ``path``; no path means allow everything."""
    if path is None:
        return ALLOW_ALL
    try:
        text = Path(path).read_text(encoding="utf-8")
        document = yaml.safe_load(text)
    except (OSError, yaml.YAMLError) as exc:
        raise PolicyError(f"cannot read the policy file {path}: {exc}") from None
    return parse_policy(document, source=path)


def parse_policy(document: Any, *, source: str = "policy") -> Policy:
    """A ``Policy`` from a parsed document; ``PolicyError`` naming the bad entry."""
    if document is None:
        return ALLOW_ALL
    if not isinstance(document, dict):
        raise PolicyError(f"{source}: must be a mapping with 'default' and 'namespaces'")
    unknown = sorted(set(document) - {"default", "namespaces"})
    if unknown:
        raise PolicyError(f"{source}: unknown key {unknown[0]!r} (expected default, namespaces)")
    default = _rule(document.get("default"), f"{source}: default")
    namespaces = document.get("namespaces") or {}
    if not isinstance(namespaces, dict):
        raise PolicyError(f"{source}: namespaces must map a namespace name to a rule")
    rules = {
        str(name): _rule(rule, f"{source}: namespaces.{name}") for name, rule in namespaces.items()
    }
    return Policy(default=default, namespaces=rules, source=source)


def _rule(raw: Any, where: str) -> Rule:
    if raw is None:
        return Rule()
    if not isinstance(raw, dict):
        raise PolicyError(f"{where}: must be a mapping with 'tasks' and 'queues'")
    unknown = sorted(set(raw) - {"tasks", "queues"})
    if unknown:
        raise PolicyError(f"{where}: unknown key {unknown[0]!r} (expected tasks, queues)")
    return Rule(tasks=_globs(raw, "tasks", where), queues=_globs(raw, "queues", where))


def _globs(raw: dict[str, Any], key: str, where: str) -> tuple[str, ...]:
    if key not in raw:
        return ("*",)
    value = raw[key]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise PolicyError(f"{where}.{key}: must be a list of glob strings")
    return tuple(value)


def _show(globs: tuple[str, ...]) -> str:
    return ", ".join(globs) if globs else "nothing"
