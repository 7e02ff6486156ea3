"""A run's owner as columns: the worker's name, the pool process's pid and session token.

Revision ID: 0006
Revises: 0004
Create Date: 2026-12-02

``runs.worker`` held one display string, ``host (pid N, session T)``, which the worker parsed
back to find the owner's session. The pid and the token now have columns of their own
(``worker_pid``, ``worker_session``) and ``worker`` keeps the worker's name alone. Existing
rows are split once here; a downgrade joins them again.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OWNER = r"^(.*) \(pid ([0-9]+), session ([0-9a-f]+)\)$"


def upgrade() -> None:
    op.add_column("runs", sa.Column("worker_pid", sa.Integer(), nullable=True))
    op.add_column("runs", sa.Column("worker_session", sa.Text(), nullable=True))
    op.execute(
        sa.text(
            "UPDATE runs SET worker = parts[1], worker_pid = parts[2]::integer,"
            " worker_session = parts[3]"
            " FROM (SELECT id AS run_id, regexp_match(worker, :owner) AS parts FROM runs"
            "       WHERE worker ~ :owner) AS split"
            " WHERE runs.id = split.run_id"
        ).bindparams(owner=_OWNER)
    )


def downgrade() -> None:
    op.execute(
        "UPDATE runs SET worker = format('%s (pid %s, session %s)', worker, worker_pid,"
        " worker_session) WHERE worker_session IS NOT NULL"
    )
    op.drop_column("runs", "worker_session")
    op.drop_column("runs", "worker_pid")
