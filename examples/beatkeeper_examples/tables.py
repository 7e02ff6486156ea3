"""The example workloads' tables, declared in schema ``beatkeeper_examples``.

One ``MetaData`` holds them all so ``db.prepare`` creates them together. Every
"exactly once" an example promises rests on a unique key here, not on a lock or a
Redis key: an instance per chore and date, a notification per cooldown claim, an
allocation per subscription and month, an outlook per user and date, a publish job per
post schedule and planned instant. This module holds no queries.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    Time,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB

__all__ = [
    "SCHEMA",
    "chore_instances",
    "chores",
    "content_templates",
    "credit_holds",
    "credit_transactions",
    "daily_outlooks",
    "dead_letters",
    "events",
    "leaderboards",
    "metadata",
    "metrics_snapshots",
    "notifications",
    "post_schedules",
    "publish_jobs",
    "schema_info",
    "subscriptions",
    "template_reviews",
    "user_scores",
    "users",
]

#: The schema name the tables are declared in; ``schema_translate_map`` maps it elsewhere.
SCHEMA = "beatkeeper_examples"

metadata = MetaData(schema=SCHEMA)


def _id() -> Column[int]:
    return Column("id", BigInteger, primary_key=True, autoincrement=True)


def _at(name: str, *, nullable: bool = True) -> Column[datetime]:
    return Column(name, DateTime(timezone=True), nullable=nullable)


def _created() -> Column[datetime]:
    return Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now())


def _user(name: str = "user_id", *, nullable: bool = False) -> Column[int]:
    return Column(name, BigInteger, ForeignKey("users.id", ondelete="CASCADE"), nullable=nullable)


#: The layout version ``db.prepare`` compares: an older layout is dropped and re-created.
schema_info = Table("schema_info", metadata, Column("version", Integer, nullable=False))

users = Table(
    "users",
    metadata,
    _id(),
    Column("name", String(100), nullable=False, unique=True),
    Column("time_zone", String(64), nullable=False),  # an IANA name
    Column("household", String(50)),  # chores and leaderboards are per household
    Column("last_active_at", DateTime(timezone=True)),
    # Daily outlook preferences: None means the schedule's default slot.
    Column("outlook_enabled", Boolean, nullable=False, server_default="true"),
    Column("outlook_weekday_time", Time),
    Column("outlook_weekend_time", Time),
    Column("credits", Integer, nullable=False, server_default="0"),  # the balance
)

# ---- chores ----------------------------------------------------------------------------

chores = Table(
    "chores",
    metadata,
    _id(),
    Column("household", String(50), nullable=False),
    Column("title", String(200), nullable=False),
    Column("rrule", Text, nullable=False),  # RFC 5545, read from starts_on at due_time
    Column("time_zone", String(64), nullable=False),
    Column("starts_on", Date, nullable=False),
    Column("due_time", Time, nullable=False),
    Column("ends_on", Date),  # the last day an instance may fall on
    Column("max_occurrences", Integer),
    Column("skip_months", ARRAY(Integer), nullable=False, server_default="{}"),
    Column("skip_dates", ARRAY(Date), nullable=False, server_default="{}"),
    Column("assignees", ARRAY(BigInteger), nullable=False, server_default="{}"),  # rotation
    Column("points", Integer, nullable=False, server_default="1"),
    # What generation has materialised so far: it never goes back over these days.
    Column("generated_through", Date),
    Column("generated_count", Integer, nullable=False, server_default="0"),
    _created(),
)

chore_instances = Table(
    "chore_instances",
    metadata,
    _id(),
    Column("chore_id", BigInteger, ForeignKey(chores.c.id, ondelete="CASCADE"), nullable=False),
    Column("sequence", Integer, nullable=False),  # 1 for the chore's first occurrence
    Column("due_date", Date, nullable=False),  # local to the chore's time zone
    Column("due_at", DateTime(timezone=True), nullable=False),
    _user("assignee_id", nullable=True),
    # available | claimed | in_progress | completed | expired
    Column("status", String(20), nullable=False, server_default="available"),
    _at("completed_at"),
    _user("completed_by", nullable=True),
    _created(),
    UniqueConstraint("chore_id", "due_date"),
    Index("chore_instances_open_due", "due_at", postgresql_where="completed_at IS NULL"),
)

notifications = Table(
    "notifications",
    metadata,
    _id(),
    _user(),
    Column("kind", String(30), nullable=False),  # due_soon, overdue, daily_outlook, ...
    Column("link", String(200), nullable=False),  # what it is about: "chore_instance:42"
    Column("title", String(200), nullable=False),
    Column("body", Text, nullable=False),
    _created(),
    # The outbox: a row is written and committed first, then dispatched.
    _at("dispatched_at"),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("last_error", Text),
    Index("notifications_cooldown", "user_id", "kind", "link", "created_at"),
    Index("notifications_undispatched", "id", postgresql_where="dispatched_at IS NULL"),
)

user_scores = Table(
    "user_scores",
    metadata,
    Column("user_id", BigInteger, ForeignKey(users.c.id, ondelete="CASCADE"), primary_key=True),
    Column("current_streak", Integer, nullable=False),
    Column("longest_streak", Integer, nullable=False),
    Column("total_completed", Integer, nullable=False),
    Column("total_points", Integer, nullable=False),
    _at("updated_at", nullable=False),
)

leaderboards = Table(
    "leaderboards",
    metadata,
    Column("household", String(50), primary_key=True),
    Column("period", String(10), primary_key=True),  # daily | weekly | monthly | all_time
    Column("period_start", Date, primary_key=True),
    Column("user_id", BigInteger, ForeignKey(users.c.id, ondelete="CASCADE"), primary_key=True),
    Column("points", Integer, nullable=False),
    Column("completed", Integer, nullable=False),
    Column("rank", Integer, nullable=False),
    _at("computed_at", nullable=False),
)

# ---- events ----------------------------------------------------------------------------

events = Table(
    "events",
    metadata,
    _id(),
    Column("title", String(200), nullable=False),
    Column("starts_at", DateTime(timezone=True), nullable=False),
    Column("ends_at", DateTime(timezone=True)),  # None: open-ended, never completed
    # draft | confirmed | ongoing | completed | cancelled
    Column("status", String(20), nullable=False, server_default="confirmed"),
    _at("completed_at"),
    Index("events_open_end", "ends_at", postgresql_where="status IN ('confirmed', 'ongoing')"),
)

# ---- credits ---------------------------------------------------------------------------

subscriptions = Table(
    "subscriptions",
    metadata,
    _id(),
    _user(),
    Column("tier", String(20), nullable=False),  # standard | premium
    Column("active", Boolean, nullable=False, server_default="true"),
    Column("started_on", Date, nullable=False),
)

credit_holds = Table(
    "credit_holds",
    metadata,
    _id(),
    _user(),
    Column("amount", Integer, nullable=False),  # taken from the balance while held
    Column("reason", String(200), nullable=False, server_default=""),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    _at("released_at"),
    Index("credit_holds_unreleased", "expires_at", postgresql_where="released_at IS NULL"),
)

credit_transactions = Table(
    "credit_transactions",
    metadata,
    _id(),
    _user(),
    Column("amount", Integer, nullable=False),  # signed: + credits the user, - debits
    # allocation | purchase | refund | usage | hold_release
    Column("kind", String(20), nullable=False),
    # pending | completed | reverted; a pending one has not touched the balance yet
    Column("status", String(20), nullable=False),
    Column("idempotency_key", String(100), unique=True),  # "allocation:<sub>:<YYYY-MM>"
    Column("notes", Text, nullable=False, server_default=""),
    _created(),
    _at("settled_at"),
    _at("synced_at"),  # sent to the analytics sink
    Index("credit_transactions_pending", "created_at", postgresql_where="status = 'pending'"),
    Index(
        "credit_transactions_unsynced",
        "id",
        postgresql_where="synced_at IS NULL AND status <> 'pending'",
    ),
)

# ---- daily outlook ---------------------------------------------------------------------

content_templates = Table(
    "content_templates",
    metadata,
    Column("name", String(50), primary_key=True),
    Column("body", Text, nullable=False),  # str.format with name and date
    Column("weight", Float, nullable=False, server_default="1"),  # how often it is picked
    Column("in_ab_test", Boolean, nullable=False, server_default="false"),
)

daily_outlooks = Table(
    "daily_outlooks",
    metadata,
    _id(),
    _user(),
    Column("outlook_date", Date, nullable=False),  # the user's local date it is for
    Column("template", String(50), nullable=False),
    Column("content", Text, nullable=False),
    _at("generated_at", nullable=False),
    _at("notified_at"),
    _at("viewed_at"),
    Column("rating", Integer),  # 1-5, given by the user
    Column("actions_completed", Boolean, nullable=False, server_default="false"),
    UniqueConstraint("user_id", "outlook_date"),
)

template_reviews = Table(
    "template_reviews",
    metadata,
    Column("template", String(50), primary_key=True),
    Column("period_end", Date, primary_key=True),  # one review per template and week
    Column("outlooks", Integer, nullable=False),
    Column("view_rate", Float, nullable=False),
    Column("engagement_rate", Float, nullable=False),
    Column("average_rating", Float),
    Column("low_performing", Boolean, nullable=False),
    _created(),
)

# ---- social publishing -----------------------------------------------------------------

post_schedules = Table(
    "post_schedules",
    metadata,
    _id(),
    Column("platform", String(20), nullable=False),  # x | mastodon | ...
    Column("body", Text, nullable=False),
    _user("owner_id", nullable=True),  # told when a post of theirs is dead-lettered
    Column("cron", String(100)),  # a recurring post; None: once, at next_run_at
    Column("time_zone", String(64), nullable=False, server_default="UTC"),
    Column("enabled", Boolean, nullable=False, server_default="true"),
    _at("next_run_at"),  # None once a one-off post has been planned
    _at("last_run_at"),
    Index("post_schedules_due", "next_run_at", postgresql_where="enabled"),
)

publish_jobs = Table(
    "publish_jobs",
    metadata,
    _id(),
    Column(
        "schedule_id",
        BigInteger,
        ForeignKey(post_schedules.c.id, ondelete="CASCADE"),
        nullable=False,
    ),
    Column("planned_at", DateTime(timezone=True), nullable=False),
    Column("platform", String(20), nullable=False),
    Column("body", Text, nullable=False),
    # planned | enqueued | running | retrying | succeeded | failed | dead
    Column("status", String(20), nullable=False, server_default="planned"),
    Column("attempt", Integer, nullable=False, server_default="0"),
    _at("next_attempt_at", nullable=False),
    _at("enqueued_at"),
    _at("started_at"),
    _at("finished_at"),
    Column("external_id", String(100)),
    Column("last_error", Text),
    UniqueConstraint("schedule_id", "planned_at", name="publish_jobs_dedupe"),
    Index(
        "publish_jobs_waiting",
        "next_attempt_at",
        postgresql_where="status IN ('planned', 'retrying')",
    ),
)

dead_letters = Table(
    "dead_letters",
    metadata,
    Column(
        "job_id", BigInteger, ForeignKey(publish_jobs.c.id, ondelete="CASCADE"), primary_key=True
    ),
    Column("reason", Text, nullable=False),
    _created(),
    _at("replayed_at"),
)

metrics_snapshots = Table(
    "metrics_snapshots",
    metadata,
    Column(
        "job_id", BigInteger, ForeignKey(publish_jobs.c.id, ondelete="CASCADE"), primary_key=True
    ),
    Column("stage", String(10), primary_key=True),  # 1h | 24h | 7d after publishing
    Column("metrics", JSONB, nullable=False),
    _at("captured_at", nullable=False),
)
