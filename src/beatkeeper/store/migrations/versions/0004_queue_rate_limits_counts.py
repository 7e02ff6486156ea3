"""Queue and rate-limited schedules; lifetime run counts that pruning does not shrink.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02

``schedules.queued`` (``concurrencyPolicy: Queue``) and ``rate_key``/``rate_runs``/
``rate_per`` (``spec.rateLimit``) are copied out of the spec so Beat's publishing claim reads
columns, not JSON. ``rate_budgets`` holds one row per (namespace, key) that a publisher locks
while it counts ``rate_sends`` in the window and records its own.

``run_counts`` keeps, per schedule and final state, how many runs ended there; a trigger on
``runs`` updates it in the transaction of each final transition (and of a run born final),
so status ``counts`` are lifetime totals however much history is pruned. The same trigger
wakes Beat when a run of a Queue schedule finishes. Existing runs are counted once here.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FINAL = "'cancelled', 'dead', 'expired', 'failed', 'missed', 'skipped', 'succeeded'"

_COUNT_RUNS = f"""
CREATE FUNCTION count_runs() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.state IN ({_FINAL}) THEN
        UPDATE run_counts SET total = total - 1
        WHERE schedule_id = OLD.schedule_id AND state = OLD.state;
    END IF;
    IF NEW.state IN ({_FINAL}) THEN
        INSERT INTO run_counts AS c (schedule_id, state, total)
        VALUES (NEW.schedule_id, NEW.state, 1)
        ON CONFLICT (schedule_id, state) DO UPDATE SET total = c.total + 1;
        IF EXISTS (SELECT 1 FROM schedules WHERE id = NEW.schedule_id AND queued) THEN
            -- The next queued run may go now: wake Beat (delivered on commit).
            PERFORM pg_notify(left('beatkeeper_' || current_schema(), 63), '');
        END IF;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER count_runs_born AFTER INSERT ON runs
FOR EACH ROW WHEN (NEW.state IN ({_FINAL})) EXECUTE FUNCTION count_runs();
CREATE TRIGGER count_runs_moved AFTER UPDATE OF state ON runs
FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state
                   AND (OLD.state IN ({_FINAL}) OR NEW.state IN ({_FINAL})))
EXECUTE FUNCTION count_runs();
"""


def upgrade() -> None:
    op.add_column(
        "schedules", sa.Column("queued", sa.Boolean(), server_default=sa.false(), nullable=False)
    )
    op.add_column("schedules", sa.Column("rate_key", sa.Text(), nullable=True))
    op.add_column("schedules", sa.Column("rate_runs", sa.Integer(), nullable=True))
    op.add_column("schedules", sa.Column("rate_per", sa.Interval(), nullable=True))
    op.execute("""
        UPDATE schedules SET queued = (spec->>'concurrencyPolicy' = 'Queue')
        WHERE spec->>'concurrencyPolicy' = 'Queue'
    """)
    op.create_index(
        "ix_schedules_held_back",
        "schedules",
        ["id"],
        postgresql_where=sa.text("queued OR rate_key IS NOT NULL"),
    )
    op.create_table(
        "run_counts",
        sa.Column("schedule_id", sa.Uuid(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("total", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.PrimaryKeyConstraint("schedule_id", "state", name=op.f("pk_run_counts")),
    )
    op.create_table(
        "rate_budgets",
        sa.Column("namespace", sa.Text(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("namespace", "key", name=op.f("pk_rate_budgets")),
    )
    op.create_table(
        "rate_sends",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("namespace", sa.Text(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rate_sends")),
    )
    op.create_index(
        "ix_rate_sends_namespace_key_sent_at", "rate_sends", ["namespace", "key", "sent_at"]
    )
    op.execute(f"""
        INSERT INTO run_counts (schedule_id, state, total)
        SELECT schedule_id, state, count(*) FROM runs WHERE state IN ({_FINAL})
        GROUP BY schedule_id, state
    """)
    op.execute(_COUNT_RUNS)


def downgrade() -> None:
    op.execute("DROP TRIGGER count_runs_moved ON runs")
    op.execute("DROP TRIGGER count_runs_born ON runs")
    op.execute("DROP FUNCTION count_runs()")
    op.drop_index("ix_rate_sends_namespace_key_sent_at", table_name="rate_sends")
    op.drop_table("rate_sends")
    op.drop_table("rate_budgets")
    op.drop_table("run_counts")
    op.drop_index("ix_schedules_held_back", table_name="schedules")
    op.drop_column("schedules", "rate_per")
    op.drop_column("schedules", "rate_runs")
    op.drop_column("schedules", "rate_key")
    op.drop_column("schedules", "queued")
