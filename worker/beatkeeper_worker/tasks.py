"""Built-in tasks every beatkeeper worker runs, whatever the user's own tasks are.

``beatkeeper.noop`` does nothing: ``beatkeeper smoke`` (the Helm chart's test pod) and the
benchmarks schedule it to exercise the whole path, Beat → broker → worker → run record,
without depending on any user code. It is a ``shared_task`` so that a user's own app gets
it too when it lists ``beatkeeper_worker.tasks`` in ``imports``. Tasks here must stay free
of side effects.
"""

from __future__ import annotations

from typing import Any

from celery import shared_task

__all__ = ["NOOP", "noop"]

NOOP = "beatkeeper.noop"


@shared_task(name=NOOP)  # type: ignore[untyped-decorator]  # celery has no type hints
def noop(*args: Any, **kwargs: Any) -> None:
    """Accept any arguments and return nothing."""
    del args, kwargs
