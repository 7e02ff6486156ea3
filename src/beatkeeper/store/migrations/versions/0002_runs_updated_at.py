"""Index runs by updated_at.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22

The operator's status refresher asks every few seconds which runs changed since its last
poll (`runs.updated_at > :since`); without this index each poll reads the whole runs table.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(op.f("ix_runs_updated_at"), "runs", ["updated_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_runs_updated_at"), table_name="runs")
