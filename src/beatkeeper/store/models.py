"""The database tables of beatkeeper as SQLAlchemy 2 typed declarative models.

The main tables: ``schedules`` (one row per Schedule resource, keyed by its
``metadata.uid``) and ``runs`` (one row per occurrence, unique on ``(schedule_id,
planned_at)``). Beside them: ``run_counts`` (lifetime runs per schedule and final state, kept
by a trigger on ``runs`` in the transaction of each final transition, so pruning history never
shrinks them), ``rate_budgets`` with ``rate_sends`` (the runs sent per ``spec.rateLimit``
key, counted over the limit's window while the budget row is locked), and ``cancel_requests``
(who asked to cancel a running run, until a component with Celery has stopped it). These models are
the reference the migrations are tested against (``tests/integration/test_migrations.py``):
a change here needs a new migration under ``migrations/versions/`` in the same change.

The tables carry no schema name: the engine puts the configured schema on the connection's
``search_path`` (see ``engine.py``). This module must not name a schema, open connections or
hold queries; it only describes tables.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    DDL,
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Interval,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
    event,
    false,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from beatkeeper.states import ACTIVE, FINAL, RunState

__all__ = [
    "COUNT_RUNS_DDL",
    "Base",
    "CancelRequest",
    "RateBudget",
    "RateSend",
    "Run",
    "RunCount",
    "RunOrigin",
    "Schedule",
    "cancel_requests",
    "metadata",
    "rate_budgets",
    "rate_sends",
    "run_counts",
    "runs",
    "schedules",
]


class RunOrigin(StrEnum):
    """Why a run exists; the values are what the ``runs.origin`` column stores."""

    SCHEDULE = "schedule"
    MANUAL = "manual"
    BACKFILL = "backfill"
    REPLAY = "replay"


# Fixed names make constraints addressable from migrations and identical whether a table was
# created by Alembic or by metadata.create_all.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def _in(column: str, values: Iterable[str]) -> str:
    """SQL for ``column IN ('a', 'b')`` over enum values (plain lower-case words, no quoting)."""
    quoted = ", ".join(f"'{value}'" for value in sorted(values))
    return f"{column} IN ({quoted})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        str: Text,
        datetime: DateTime(timezone=True),
        uuid.UUID: Uuid,
        dict[str, Any]: JSONB,
    }


class Schedule(Base):
    """A Schedule resource as last applied, and where its planning has got to."""

    __tablename__ = "schedules"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)  # the resource's metadata.uid
    namespace: Mapped[str]
    name: Mapped[str]
    generation: Mapped[int] = mapped_column(BigInteger)
    spec: Mapped[dict[str, Any]]  # the validated spec as applied
    spec_hash: Mapped[str]
    task: Mapped[str]
    queue: Mapped[str | None]
    zone: Mapped[str]
    trigger: Mapped[str]  # one-line summary for `kubectl get`
    suspended: Mapped[bool] = mapped_column(server_default=false())
    paused_reason: Mapped[str | None]  # set when pauseAfterFailures suspended it
    consecutive_failures: Mapped[int] = mapped_column(server_default=text("0"))
    planned_count: Mapped[int] = mapped_column(server_default=text("0"))  # for maxRuns
    next_run_at: Mapped[datetime | None]  # next nominal occurrence; NULL: nothing to plan
    next_due_at: Mapped[datetime | None]  # next_run_at + jitter: what Beat claims on
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())  # anchors intervals
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())
    last_scheduled_at: Mapped[datetime | None]
    deleted_at: Mapped[datetime | None]
    # concurrencyPolicy: Queue: a planned run waits while another run of it is unfinished.
    queued: Mapped[bool] = mapped_column(server_default=false())
    # spec.rateLimit, copied out of the spec so the publishing claim reads no JSON.
    rate_key: Mapped[str | None]
    rate_runs: Mapped[int | None]
    rate_per: Mapped[timedelta | None] = mapped_column(Interval)

    __table_args__ = (
        # A deleted resource keeps its row (and runs) while a new one reuses the name.
        Index(
            "uq_schedules_namespace_name",
            "namespace",
            "name",
            unique=True,
            postgresql_where=text("deleted_at IS NULL"),
        ),
        # Beat's claim query reads only due rows, so its cost follows what is due, not the
        # table size.
        Index(
            "ix_schedules_due",
            "next_due_at",
            postgresql_where=text(
                "deleted_at IS NULL AND NOT suspended AND next_due_at IS NOT NULL"
            ),
        ),
        # The few schedules whose runs may wait although due (Queue, rateLimit): Beat's
        # next_wake looks at their runs without reading every schedule.
        Index(
            "ix_schedules_held_back",
            "id",
            postgresql_where=text("queued OR rate_key IS NOT NULL"),
        ),
    )


class Run(Base):
    """One occurrence of one schedule, through every attempt; its id is the Celery task id."""

    __tablename__ = "runs"

    # gen_random_uuid() lets bulk INSERT … SELECT FROM unnest(…) plan runs without ids.
    id: Mapped[uuid.UUID] = mapped_column(
        primary_key=True, default=uuid.uuid4, server_default=func.gen_random_uuid()
    )
    schedule_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("schedules.id", ondelete="CASCADE"))
    planned_at: Mapped[datetime]  # the nominal occurrence; with schedule_id, the run's key
    due_at: Mapped[datetime]  # when it may be published: planned + jitter, or the next attempt
    state: Mapped[str] = mapped_column(server_default=RunState.PLANNED.value)
    origin: Mapped[str] = mapped_column(server_default=RunOrigin.SCHEDULE.value)
    attempt: Mapped[int] = mapped_column(server_default=text("1"))
    max_attempts: Mapped[int] = mapped_column(server_default=text("1"))
    task: Mapped[str]
    enqueued_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    # The owner (``beatkeeper.decisions.ownership.Owner``): the worker's name, and the pid and
    # session token of its pool process running the run (NULL when no process holds it).
    worker: Mapped[str | None]
    worker_pid: Mapped[int | None]
    worker_session: Mapped[str | None]
    result: Mapped[str | None]  # a bounded summary, never the full return value
    error: Mapped[str | None]
    replay_of: Mapped[uuid.UUID | None]  # no FK: pruning history must not touch replays
    worker_losses: Mapped[int] = mapped_column(server_default=text("0"))  # processes it killed
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())

    __table_args__ = (
        # The key that plans an occurrence at most once (invariant 1). Its btree also serves
        # "latest runs of a schedule" (scanned backwards) and the FK's ON DELETE CASCADE, so
        # no separate (schedule_id, planned_at DESC) index is kept on the hottest insert path.
        UniqueConstraint("schedule_id", "planned_at"),
        CheckConstraint(_in("state", RunState), name="state"),
        CheckConstraint(_in("origin", RunOrigin), name="origin"),
        CheckConstraint("attempt >= 1 AND max_attempts >= 1", name="attempts"),
        # What a tick publishes: planned runs and retries whose time has come.
        Index(
            "ix_runs_publishable",
            "due_at",
            postgresql_where=text(_in("state", {RunState.PLANNED, RunState.RETRYING})),
        ),
        # concurrencyPolicy looks up a schedule's active runs.
        Index("ix_runs_active", "schedule_id", postgresql_where=text(_in("state", ACTIVE))),
        # Beat's search for runs whose message was lost (enqueued long ago, never started).
        Index("ix_runs_enqueued", "enqueued_at", postgresql_where=text("state = 'enqueued'")),
        # The operator's status refresher polls for runs changed since its last look.
        Index("ix_runs_updated_at", "updated_at"),
    )


class RunCount(Base):
    """How many runs of a schedule are in a final state, whatever history pruned since."""

    __tablename__ = "run_counts"

    # No foreign key: its check would take a KEY SHARE lock on the schedule row from inside a
    # worker's final transition, which Beat's claim (FOR UPDATE) would then skip or wait on.
    schedule_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    state: Mapped[str] = mapped_column(primary_key=True)
    total: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))


class RateBudget(Base):
    """One ``spec.rateLimit`` key of one namespace: the row a publisher locks to spend it."""

    __tablename__ = "rate_budgets"

    namespace: Mapped[str] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(primary_key=True)


class RateSend(Base):
    """One run sent under a rate limit; rows older than the limit's window are deleted."""

    __tablename__ = "rate_sends"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    namespace: Mapped[str]
    key: Mapped[str]
    sent_at: Mapped[datetime]
    run_id: Mapped[uuid.UUID]

    __table_args__ = (Index("ix_rate_sends_namespace_key_sent_at", "namespace", "key", "sent_at"),)


class CancelRequest(Base):
    """A person asked to cancel a running run; Beat revokes its Celery task and sees it end.

    Kept once settled (``settled_at``): a request seen again, from the same annotation or a
    second ``beatkeeper runs cancel``, finds it and does nothing.
    """

    __tablename__ = "cancel_requests"

    run_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True
    )
    requested_at: Mapped[datetime]
    reason: Mapped[str]  # names who asked; becomes the run's error when it is cancelled
    check_at: Mapped[datetime]  # when Beat next acts on it: revoke, revoke again, give up
    revoked_at: Mapped[datetime | None]  # the first revoke sent; the deadline counts from it
    settled_at: Mapped[datetime | None]  # the run left ``running``: cancelled, or finished

    __table_args__ = (
        # Beat's look for requests to act on reads the open ones only.
        Index("ix_cancel_requests_open", "check_at", postgresql_where=text("settled_at IS NULL")),
    )


NOTIFY_PREFIX = "beatkeeper_"
"""Beat listens on this prefix + its schema (``beatkeeper.store.notifications.channel_for``)."""

_FINAL_STATES = ", ".join(f"'{state.value}'" for state in sorted(FINAL))

COUNT_RUNS_DDL = f"""
CREATE FUNCTION count_runs() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.state IN ({_FINAL_STATES}) THEN
        UPDATE run_counts SET total = total - 1
        WHERE schedule_id = OLD.schedule_id AND state = OLD.state;
    END IF;
    IF NEW.state IN ({_FINAL_STATES}) THEN
        INSERT INTO run_counts AS c (schedule_id, state, total)
        VALUES (NEW.schedule_id, NEW.state, 1)
        ON CONFLICT (schedule_id, state) DO UPDATE SET total = c.total + 1;
        IF EXISTS (SELECT 1 FROM schedules WHERE id = NEW.schedule_id AND queued) THEN
            -- The next queued run may go now: wake Beat (delivered on commit).
            PERFORM pg_notify(left('{NOTIFY_PREFIX}' || current_schema(), 63), '');
        END IF;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER count_runs_born AFTER INSERT ON runs
FOR EACH ROW WHEN (NEW.state IN ({_FINAL_STATES})) EXECUTE FUNCTION count_runs();
CREATE TRIGGER count_runs_moved AFTER UPDATE OF state ON runs
FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state
                   AND (OLD.state IN ({_FINAL_STATES}) OR NEW.state IN ({_FINAL_STATES})))
EXECUTE FUNCTION count_runs();
"""  # noqa: S608 (constant SQL fragments, no input)
"""Keeps ``run_counts`` in the transaction of every final transition (a run born final
counts too; leaving ``failed`` for a retry takes it back), and wakes Beat when a run of a
``Queue`` schedule finishes, as the next one may go then."""

event.listen(Run.__table__, "after_create", DDL(COUNT_RUNS_DDL))  # type: ignore[no-untyped-call]

metadata: MetaData = Base.metadata
schedules: Table = Schedule.__table__  # type: ignore[assignment]
runs: Table = Run.__table__  # type: ignore[assignment]
run_counts: Table = RunCount.__table__  # type: ignore[assignment]
rate_budgets: Table = RateBudget.__table__  # type: ignore[assignment]
rate_sends: Table = RateSend.__table__  # type: ignore[assignment]
cancel_requests: Table = CancelRequest.__table__  # type: ignore[assignment]
