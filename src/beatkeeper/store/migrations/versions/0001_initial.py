"""The schedules and runs tables.

Revision ID: 0001
Revises:
Create Date: 2026-11-22

Written by hand and frozen: the state and origin lists are spelled out rather than imported
from beatkeeper.states, because a migration must keep meaning what it meant when it shipped.
A new state needs a new migration that replaces ck_runs_state (and the partial indexes that
name states). No schema is named: tables go where the connection's search_path points.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "schedules",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("namespace", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("generation", sa.BigInteger(), nullable=False),
        sa.Column("spec", postgresql.JSONB(), nullable=False),
        sa.Column("spec_hash", sa.Text(), nullable=False),
        sa.Column("task", sa.Text(), nullable=False),
        sa.Column("queue", sa.Text(), nullable=True),
        sa.Column("zone", sa.Text(), nullable=False),
        sa.Column("trigger", sa.Text(), nullable=False),
        sa.Column("suspended", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("paused_reason", sa.Text(), nullable=True),
        sa.Column("consecutive_failures", sa.Integer(), server_default="0", nullable=False),
        sa.Column("planned_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_run_at", _TZ, nullable=True),
        sa.Column("next_due_at", _TZ, nullable=True),
        sa.Column("created_at", _TZ, server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", _TZ, server_default=sa.func.now(), nullable=False),
        sa.Column("last_scheduled_at", _TZ, nullable=True),
        sa.Column("deleted_at", _TZ, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_schedules")),
    )
    op.create_index(
        op.f("uq_schedules_namespace_name"),
        "schedules",
        ["namespace", "name"],
        unique=True,
        postgresql_where=sa.text("deleted_at IS NULL"),
    )
    op.create_index(
        op.f("ix_schedules_due"),
        "schedules",
        ["next_due_at"],
        postgresql_where=sa.text(
            "deleted_at IS NULL AND NOT suspended AND next_due_at IS NOT NULL"
        ),
    )

    op.create_table(
        "runs",
        sa.Column("id", sa.Uuid(), server_default=sa.func.gen_random_uuid(), nullable=False),
        sa.Column("schedule_id", sa.Uuid(), nullable=False),
        sa.Column("planned_at", _TZ, nullable=False),
        sa.Column("due_at", _TZ, nullable=False),
        sa.Column("state", sa.Text(), server_default="planned", nullable=False),
        sa.Column("origin", sa.Text(), server_default="schedule", nullable=False),
        sa.Column("attempt", sa.Integer(), server_default="1", nullable=False),
        sa.Column("max_attempts", sa.Integer(), server_default="1", nullable=False),
        sa.Column("task", sa.Text(), nullable=False),
        sa.Column("enqueued_at", _TZ, nullable=True),
        sa.Column("started_at", _TZ, nullable=True),
        sa.Column("finished_at", _TZ, nullable=True),
        sa.Column("worker", sa.Text(), nullable=True),
        sa.Column("result", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("replay_of", sa.Uuid(), nullable=True),
        sa.Column("created_at", _TZ, server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", _TZ, server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runs")),
        sa.ForeignKeyConstraint(
            ["schedule_id"],
            ["schedules.id"],
            name=op.f("fk_runs_schedule_id_schedules"),
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint(
            "schedule_id", "planned_at", name=op.f("uq_runs_schedule_id_planned_at")
        ),
        sa.CheckConstraint(
            "state IN ('cancelled', 'dead', 'enqueued', 'expired', 'failed', 'missed', "
            "'planned', 'retrying', 'running', 'skipped', 'succeeded')",
            name=op.f("ck_runs_state"),
        ),
        sa.CheckConstraint(
            "origin IN ('backfill', 'manual', 'replay', 'schedule')", name=op.f("ck_runs_origin")
        ),
        sa.CheckConstraint("attempt >= 1 AND max_attempts >= 1", name=op.f("ck_runs_attempts")),
    )
    op.create_index(
        op.f("ix_runs_publishable"),
        "runs",
        ["due_at"],
        postgresql_where=sa.text("state IN ('planned', 'retrying')"),
    )
    op.create_index(
        op.f("ix_runs_active"),
        "runs",
        ["schedule_id"],
        postgresql_where=sa.text("state IN ('enqueued', 'retrying', 'running')"),
    )


def downgrade() -> None:
    op.drop_table("runs")
    op.drop_table("schedules")
