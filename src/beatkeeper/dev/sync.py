"""Keep the store in step with a folder of manifests, for `beatkeeper dev`.

Every valid Schedule is applied with the same `apply_schedule` the operator uses, unless the
tenancy policy (``BEATKEEPER_POLICY_FILE``) forbids it: then it is a problem like any other,
reported with the namespace, task and policy file, and nothing of it is applied.

`beatkeeper dev` owns only the schedules it applied from its manifests: it records each
one with the file it came from in ``owned.json`` in its state folder. Schedules made any
other way (`beatkeeper apply`, another stack, a test) are never touched. An owned schedule
is deleted only when the file it came from lies under the loaded paths and no longer holds
it (the file was deleted, or the document removed or renamed); one whose file lies outside
the loaded paths (``-f`` named another folder this time) is kept. Nothing is deleted while
any manifest fails to read: a broken file must not look like a deleted schedule, so the
previous version of everything stays in force until every problem is fixed.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from beatkeeper.manifests import check_paths
from beatkeeper.policy import ALLOW_ALL, Policy
from beatkeeper.problems import Problem, SpecError
from beatkeeper.spec import ScheduleManifest
from beatkeeper.store import Engine
from beatkeeper.store.schedules import Applied, apply_alone, delete_schedule

OWNED_FILE = "owned.json"
Name = tuple[str, str]
_DOCUMENT_NUMBER = re.compile(r"#\d+$")


@dataclass
class Outcome:
    applied: list[Applied] = field(default_factory=list)  # created or updated
    unchanged: list[Applied] = field(default_factory=list)
    deleted: list[tuple[Name, str]] = field(default_factory=list)  # and the file it was in
    problems: list[tuple[str, Problem]] = field(default_factory=list)
    fixed: list[str] = field(default_factory=list)  # files whose problems are gone
    elsewhere: list[tuple[Name, str]] = field(default_factory=list)  # owned, file not loaded


class Folder:
    """The manifests under ``paths`` and what this state folder owns from them."""

    def __init__(self, paths: Sequence[Path], state: Path, *, policy: Policy = ALLOW_ALL) -> None:
        self.paths = list(paths)
        self._policy = policy
        self._record = state / OWNED_FILE
        self._owned = _read(self._record)
        self._broken: set[str] = set()

    def sync(self, engine: Engine) -> Outcome:
        """Apply the manifests; delete the owned schedules whose manifests are gone."""
        now = datetime.now(UTC)
        checked = check_paths(self.paths, now=now)
        outcome = Outcome(problems=checked.problems)
        broken = {_DOCUMENT_NUMBER.sub("", source) for source, _ in checked.problems}
        outcome.fixed = sorted(self._broken - broken)
        self._broken = broken
        present = {
            (v.manifest.metadata.namespace, v.manifest.metadata.name): _file_of(document.source)
            for document, v in checked.valid
        }
        with engine.begin() as db:
            for document, validated in checked.valid:
                try:
                    self._check_policy(validated.manifest)
                    # A refused manifest leaves the others applied.
                    applied = apply_alone(db, validated.manifest, now=now)
                except SpecError as refused:  # e.g. a uid copied from another Schedule
                    outcome.problems += [(document.source, p) for p in refused.problems]
                    meta = validated.manifest.metadata
                    present.pop((meta.namespace, meta.name), None)
                    self._broken.add(_DOCUMENT_NUMBER.sub("", document.source))
                    continue
                changed = applied.action != "unchanged"
                (outcome.applied if changed else outcome.unchanged).append(applied)
            if not outcome.problems:
                for name, source in sorted(self._owned.items()):
                    if name in present:
                        continue
                    if not self._loaded(source):
                        outcome.elsewhere.append((name, source))
                        continue
                    namespace, schedule = name
                    if delete_schedule(db, namespace=namespace, name=schedule, now=now):
                        outcome.deleted.append((name, source))
                    del self._owned[name]
        self._owned.update(present)
        _write(self._record, self._owned)
        return outcome

    def _check_policy(self, manifest: ScheduleManifest) -> None:
        meta, spec = manifest.metadata, manifest.spec
        refused = self._policy.refuses_schedule(
            namespace=meta.namespace, task=spec.task, queue=spec.queue
        )
        if refused is not None:
            raise SpecError([Problem("", refused)])

    def _loaded(self, source: str) -> bool:
        file = Path(source)
        return any(file == root or root in file.parents for root in map(_absolute, self.paths))


def _file_of(source: str) -> str:
    return str(_absolute(Path(_DOCUMENT_NUMBER.sub("", source))))


def _absolute(path: Path) -> Path:
    return Path(os.path.abspath(path))


def _read(record: Path) -> dict[Name, str]:
    try:
        entries = json.loads(record.read_text())
    except (OSError, ValueError):
        return {}  # nothing recorded yet (or unreadable): own nothing rather than guess
    owned: dict[Name, str] = {}
    for key, source in entries.items():
        namespace, _, name = key.partition("/")
        owned[namespace, name] = source
    return owned


def _write(record: Path, owned: dict[Name, str]) -> None:
    entries = {f"{namespace}/{name}": source for (namespace, name), source in owned.items()}
    record.parent.mkdir(parents=True, exist_ok=True)
    partial = record.with_suffix(".tmp")
    partial.write_text(json.dumps(entries, indent=2, sort_keys=True) + "\n")
    partial.replace(record)
