"""Keep the store in step with a folder of manifests, for `beatkeeper dev`.

Every valid Schedule is applied with the same `apply_schedule` the operator uses. A
schedule is deleted only when its manifest is gone and every manifest read cleanly: a file
that fails to parse must not look like a deleted schedule, so while any problem stands the
previous version of everything stays in force.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Connection, Engine, select

from beatkeeper.manifests import check_paths
from beatkeeper.problems import Problem, SpecError
from beatkeeper.store.models import schedules
from beatkeeper.store.schedules import Applied, apply_schedule, delete_schedule

Name = tuple[str, str]


@dataclass
class Outcome:
    applied: list[Applied] = field(default_factory=list)
    deleted: list[Name] = field(default_factory=list)
    problems: list[tuple[str, Problem]] = field(default_factory=list)


def sync(engine: Engine, paths: Sequence[Path], *, owned: set[Name] | None) -> Outcome:
    """Apply the manifests under `paths`; delete the schedules whose manifests are gone.

    `owned` is the set of schedules this folder is known to hold; None means the whole
    database belongs to the folder (the embedded one), so anything else in it is deleted.
    The set is updated in place.
    """
    now = datetime.now(UTC)
    checked = check_paths(paths, now=now)
    outcome = Outcome(problems=checked.problems)
    present = {(v.manifest.metadata.namespace, v.manifest.metadata.name) for _, v in checked.valid}
    with engine.begin() as db:
        for document, validated in checked.valid:
            try:
                with db.begin_nested():  # a refused manifest leaves the others applied
                    applied = apply_schedule(db, validated.manifest, now=now)
            except SpecError as refused:
                outcome.problems += [(document.source, problem) for problem in refused.problems]
                continue
            if applied.action != "unchanged":
                outcome.applied.append(applied)
        if checked.problems:
            return outcome
        for namespace, name in sorted(_known(db, owned) - present):
            if delete_schedule(db, namespace=namespace, name=name, now=now):
                outcome.deleted.append((namespace, name))
    if owned is not None:
        owned.clear()
        owned.update(present)
    return outcome


def _known(db: Connection, owned: set[Name] | None) -> set[Name]:
    if owned is not None:
        return set(owned)
    rows = db.execute(
        select(schedules.c.namespace, schedules.c.name).where(schedules.c.deleted_at.is_(None))
    )
    return {(row.namespace, row.name) for row in rows}
