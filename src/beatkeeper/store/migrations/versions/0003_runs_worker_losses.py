"""Count, per run, the worker processes that died running it; index runs waiting enqueued.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01

A message whose body kills its process (a segfault, the OOM killer) comes back through
``task_reject_on_worker_lost`` and is taken over by the next process, which dies in turn:
without a count it would loop for ever. The worker fails the run once the count reaches its
limit (``beatkeeper.decisions.ownership.MAX_WORKER_LOSSES``).

Beat looks for runs ``enqueued`` long ago and never started (a message lost between a Redis
broker and a worker) to publish them again; ``ix_runs_enqueued`` keeps that query's cost to
the runs waiting, not the table.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "runs",
        sa.Column("worker_losses", sa.Integer(), server_default=sa.text("0"), nullable=False),
    )
    op.create_index(
        op.f("ix_runs_enqueued"),
        "runs",
        ["enqueued_at"],
        postgresql_where=sa.text("state = 'enqueued'"),
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_runs_enqueued"), table_name="runs")
    op.drop_column("runs", "worker_losses")
