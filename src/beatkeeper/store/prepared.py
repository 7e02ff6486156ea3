"""The claim and the success, a pool process's two writes per run, as prepared statements.

``beatkeeper.store.runs.transition`` stays the one definition of a move (its source states,
the timestamps it stamps): ``_Compiled.of_transition`` records the statement it builds for a
placeholder run and time, with the named fields left as parameters, which gives the exact
same UPDATE as a ``held_connection.Statement`` for tens of microseconds per run instead of
hundreds. The claim also checks that the message is its run's (``MESSAGE_MATCHES_ROW``, the
SQL twin of ``beatkeeper.decisions.ownership.mismatch``).

This module builds SQL; it must not execute any.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Connection,
    DateTime,
    Dialect,
    Update,
    bindparam,
    exists,
    func,
    literal_column,
    select,
    update,
)

from beatkeeper.states import RunState
from beatkeeper.store.held_connection import Statement
from beatkeeper.store.models import runs, schedules
from beatkeeper.store.runs import transition

__all__ = [
    "DUE_BY",
    "MESSAGE_MATCHES_ROW",
    "MESSAGE_MATCH_FIELDS",
    "OWNER_FIELDS",
    "RESET_FAILURES",
    "WAITING",
    "Statements",
    "statements_for",
]

#: Before this, a run that waits to be published cannot have a genuine message (Beat
#: publishes nothing earlier; a minute of slack covers clocks that disagree).
DUE_BY = literal_column(
    "statement_timestamp() + interval '1 minute'", type_=DateTime(timezone=True)
)
WAITING = (RunState.PLANNED.value, RunState.RETRYING.value)

MESSAGE_MATCHES_ROW: ColumnElement[bool] = (
    (runs.c.task == bindparam("task", None))
    & (runs.c.schedule_id == bindparam("schedule_id", None))
    & exists().where(
        schedules.c.id == runs.c.schedule_id,
        schedules.c.namespace == bindparam("namespace", None),
        schedules.c.name == bindparam("name", None),
    )
    & (runs.c.state.not_in(WAITING) | (runs.c.due_at <= DUE_BY))
)
"""The claim's condition that the message is its run's; parameters ``MESSAGE_MATCH_FIELDS``."""
MESSAGE_MATCH_FIELDS = ("task", "schedule_id", "namespace", "name")
#: The columns naming a run's owner (``beatkeeper.decisions.ownership.Owner``).
OWNER_FIELDS = ("worker", "worker_pid", "worker_session")

#: After a success (parameter ``schedule_id``): the count restarts from zero. It updates
#: only a schedule that has a count, so it usually writes nothing.
RESET_FAILURES: Update = (
    update(schedules)
    .where(schedules.c.id == bindparam("schedule_id"), schedules.c.consecutive_failures != 0)
    .values(consecutive_failures=0)
)


@dataclass(frozen=True)
class Statements:
    #: parameters id, now, worker, worker_pid, worker_session, task, schedule_id, namespace, name
    claim: Statement
    success: Statement  # parameters id, now, result, schedule_id


def statements_for(dialect: Dialect) -> Statements:
    """The claim and the success, as each pool process prepares them on its connections."""
    claim = _Compiled.of_transition(
        dialect, RunState.RUNNING, *OWNER_FIELDS, durable=False, match_message=True
    )
    success = _Compiled.of_transition(dialect, RunState.SUCCEEDED, "result").then(
        _Compiled.of(RESET_FAILURES, dialect, "schedule_id")
    )
    return Statements(claim.statement("beatkeeper_claim"), success.statement("beatkeeper_success"))


class _Recorder:
    """Stands in for a Connection: keeps the statement ``transition`` builds, runs nothing."""

    statement: Update

    def execute(self, statement: Update) -> _Recorder:
        self.statement = statement
        return self

    def first(self) -> tuple[bool]:
        return (True,)


_SOME_RUN = uuid.UUID("00000000-0000-4000-8000-00000000b33f")
_SOME_TIME = datetime(2000, 1, 1, 0, 0, 0, 424242, tzinfo=UTC)


@dataclass(frozen=True)
class _Compiled:
    """A statement as driver SQL, compiled once; ``of_transition`` for a run's moves.

    ``transition`` stays the one definition of a move (its source states, the timestamps
    it stamps): ``of_transition`` records the statement it builds for a placeholder run and
    time, with the named fields left as parameters, and the placeholders become the
    parameters ``id`` and ``now``.
    """

    sql: str
    constants: dict[str, Any]
    now_keys: tuple[str, ...] = ()
    id_keys: tuple[str, ...] = ()

    @classmethod
    def of_transition(
        cls,
        dialect: Dialect,
        to: RunState,
        *fields: str,
        durable: bool = True,
        match_message: bool = False,
    ) -> _Compiled:
        recorder = _Recorder()
        placeholders: dict[str, Any] = {name: bindparam(name, None) for name in fields}
        transition(cast(Connection, recorder), _SOME_RUN, to, now=_SOME_TIME, **placeholders)
        statement = recorder.statement
        if match_message:
            statement = statement.where(MESSAGE_MATCHES_ROW)
            fields = (*fields, *MESSAGE_MATCH_FIELDS)
        if not durable:
            # SET LOCAL for this one statement's implicit transaction.
            setting = select(func.set_config("synchronous_commit", "off", True)).cte("quick")
            statement = statement.add_cte(setting).where(exists(setting.select()))
        return cls.of(statement, dialect, *fields)

    @classmethod
    def of(cls, statement: Update, dialect: Dialect, *fields: str) -> _Compiled:
        compiled = statement.compile(dialect=dialect, compile_kwargs={"render_postcompile": True})
        values = compiled.params
        now_keys = tuple(key for key, value in values.items() if value == _SOME_TIME)
        id_keys = tuple(key for key, value in values.items() if value == _SOME_RUN)
        constants = {k: v for k, v in values.items() if k not in {*now_keys, *id_keys, *fields}}
        return cls(str(compiled), constants, now_keys, id_keys)

    def then(self, other: _Compiled) -> _Compiled:
        """This ``UPDATE … RETURNING`` and, when it changed a row, ``other`` (an UPDATE …
        WHERE), as one statement returning what this one returns."""
        # Two compiled statements put together; every value travels as a parameter.
        moved = f"WITH moved AS ({self.sql}), "
        sql = f"{moved}followed AS ({other.sql} AND EXISTS (SELECT FROM moved)) SELECT * FROM moved"  # noqa: S608
        constants = {**self.constants, **other.constants}
        return _Compiled(
            sql, constants, self.now_keys + other.now_keys, self.id_keys + other.id_keys
        )

    def statement(self, name: str) -> Statement:
        """As a ``Statement`` taking ``id`` and ``now`` for the placeholders."""
        sql = self.sql
        for key in self.now_keys:
            sql = sql.replace(f"%({key})s", "%(now)s")
        for key in self.id_keys:
            sql = sql.replace(f"%({key})s", "%(id)s")
        return Statement.of(name, sql, self.constants)
