"""Which Celery task names a worker with `BEATKEEPER_IMPORTS=<modules>` would register.

A worker imports exactly those modules; a module they import in turn (as
`beatkeeper_examples.tasks` imports each example) counts too. Other tests in the same
process may have imported more, so a task counts only if it was defined in a module the
listed ones import or re-export.
"""

from __future__ import annotations

import importlib
import types

import celery


def registered_by(modules: list[str]) -> set[str]:
    reached: set[str] = set()
    for name in modules:
        module = importlib.import_module(name)
        reached.add(module.__name__)
        reached.update(
            value.__name__ for value in vars(module).values() if isinstance(value, types.ModuleType)
        )
    app = celery.Celery("task-modules", set_as_current=False)
    return {name for name, task in app.tasks.items() if task.__module__ in reached}
