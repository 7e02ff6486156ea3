"""beatkeeper's PostgreSQL store: the only package that talks SQL.

Every query is a named operation in the module of its area; callers pass a ``Connection``
(from ``engine.begin()`` or ``engine.connect()``) and never write SQL or import SQLAlchemy
or psycopg themselves. The rooms, one per module:

- ``engine``: ``make_engine(settings)``, the only way to get an engine, and
  ``DatabaseUnavailable``, raised for a database that cannot be reached or was lost, and as
  ``SchemaMissing`` for one whose schema has no beatkeeper tables.
- ``models``: the tables as SQLAlchemy models.
- ``runs``: ``transition`` and friends, run state changes as conditional UPDATEs.
- ``schedules``: ``apply_schedule`` and ``delete_schedule``, the one reconcile.
- ``planning``: the named queries of a Beat tick.
- ``lookups``: schedules and runs found by name or id prefix, runs as listed.
- ``requests``: runs people ask for (trigger, replay) and lifting a pause;
  ``cancellations``: cancels, a running run's as a request Beat acts on;
  ``backfills``: runs planned for a past or future window.
- ``status``: what a Schedule's status is read from, and what changed since a poll.
- ``recording``: what a worker records about a run, as named operations; ``prepared``,
  ``held_connection`` and ``sessions`` carry its per-run statements and connections.
- ``migrate``: ``upgrade(engine_or_settings, schema)``, Alembic driven from Python. Import it
  as ``beatkeeper.store.migrate`` where needed; it is not re-exported here so that processes
  that never migrate do not pay for importing Alembic.

It may use the pure core (``beatkeeper.states``, the spec, ``beatkeeper.decisions``) and
``beatkeeper.settings``; it must never import Celery, kopf, the operator or the worker.
"""

from beatkeeper.store.engine import (
    Connection,
    DatabaseUnavailable,
    Engine,
    SchemaMissing,
    check_database_url,
    make_engine,
    ping,
    schema_of,
)
from beatkeeper.store.models import Run, RunOrigin, Schedule, metadata
from beatkeeper.store.runs import explain_transition, transition, transition_many

__all__ = [
    "Connection",
    "DatabaseUnavailable",
    "Engine",
    "Run",
    "RunOrigin",
    "Schedule",
    "SchemaMissing",
    "check_database_url",
    "explain_transition",
    "make_engine",
    "metadata",
    "ping",
    "schema_of",
    "transition",
    "transition_many",
]
