"""beatkeeper's PostgreSQL store: tables, the engine, run transitions and migrations.

The rooms, one per module:

- ``engine``: ``make_engine(settings)``, the only way to get an engine, and
  ``DatabaseUnavailable`` for a server that cannot be reached.
- ``models``: the ``schedules`` and ``runs`` tables as SQLAlchemy models.
- ``runs``: ``transition`` and friends, run state changes as conditional UPDATEs.
- ``recording``: what a worker records about a run, as named operations; ``prepared``,
  ``held_connection`` and ``sessions`` carry its per-run statements and connections.
- ``migrate``: ``upgrade(engine_or_settings, schema)``, Alembic driven from Python. Import it
  as ``beatkeeper.store.migrate`` where needed; it is not re-exported here so that processes
  that never migrate do not pay for importing Alembic.

Only the store talks SQL. It may use the pure core (``beatkeeper.states``, the spec) and
``beatkeeper.settings``; it must never import Celery, kopf, the operator or the worker.
"""

from beatkeeper.store.engine import DatabaseUnavailable, make_engine, ping, schema_of
from beatkeeper.store.models import Run, RunOrigin, Schedule, metadata
from beatkeeper.store.runs import explain_transition, transition, transition_many

__all__ = [
    "DatabaseUnavailable",
    "Run",
    "RunOrigin",
    "Schedule",
    "explain_transition",
    "make_engine",
    "metadata",
    "ping",
    "schema_of",
    "transition",
    "transition_many",
]
