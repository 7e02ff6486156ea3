"""Requests to cancel a running run, kept until a component with Celery has acted on them.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02

The operator and the CLI have no Celery, so cancelling a ``running`` run is a row here
(``beatkeeper.store.cancellations``): Beat revokes the run's task, the worker that ran it
records it ``cancelled``, and Beat records it so anyway once the revoke's deadline passed.
``ix_cancel_requests_open`` keeps Beat's look at the open ones independent of how many
requests were ever made.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "cancel_requests",
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("check_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["runs.id"],
            name=op.f("fk_cancel_requests_run_id_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_cancel_requests")),
    )
    op.create_index(
        "ix_cancel_requests_open",
        "cancel_requests",
        ["check_at"],
        postgresql_where=sa.text("settled_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_cancel_requests_open", table_name="cancel_requests")
    op.drop_table("cancel_requests")
