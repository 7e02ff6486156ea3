"""The example workloads' own tables, and the connections every example task shares.

The tables live in the schema ``beatkeeper_examples`` of the database beatkeeper already
uses (``BEATKEEPER_DATABASE_URL``), so ``beatkeeper dev`` needs nothing more. They are
created on first use, under an advisory lock because two worker processes may get there at
once, and a fresh schema gets a small deterministic seed (``seed``) so every example
schedule has something to act on. ``BEATKEEPER_EXAMPLES_SCHEMA`` moves them elsewhere.

Tests hand their own engine and Redis client to ``use``. This module holds no task logic.
"""

from __future__ import annotations

import os
import threading
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import redis
from sqlalchemy import (
    ARRAY,
    BigInteger,
    Column,
    Connection,
    Date,
    DateTime,
    Engine,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    Time,
    UniqueConstraint,
    func,
    insert,
    select,
    text,
)

from beatkeeper.settings import Settings
from beatkeeper.store.engine import make_engine

__all__ = [
    "SCHEMA",
    "chore_instances",
    "chores",
    "connect",
    "credit_allocations",
    "credit_holds",
    "events",
    "metadata",
    "outlooks",
    "posts",
    "prepare",
    "redis_client",
    "reminders",
    "schema_of",
    "use",
    "users",
]

#: The schema name the tables are declared in; ``schema_translate_map`` maps it elsewhere.
SCHEMA = "beatkeeper_examples"
SCHEMA_ENV = "BEATKEEPER_EXAMPLES_SCHEMA"
_LOCK_KEY = 0x6265_6174_6578  # "beatex": one advisory lock for creating the tables

_LONDON = ZoneInfo("Europe/London")

metadata = MetaData(schema=SCHEMA)


def _id() -> Column[int]:
    return Column("id", BigInteger, primary_key=True, autoincrement=True)


def _created() -> Column[datetime]:
    return Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now())


users = Table(
    "users",
    metadata,
    _id(),
    Column("name", String(100), nullable=False, unique=True),
    Column("time_zone", String(64), nullable=False),  # an IANA name
    Column("team", String(50)),
    Column("credits", Integer, nullable=False, server_default="0"),
)

chores = Table(
    "chores",
    metadata,
    _id(),
    Column("title", String(200), nullable=False),
    Column("rrule", Text, nullable=False),  # RFC 5545, read from starts_on at due_time
    Column("time_zone", String(64), nullable=False),
    Column("starts_on", Date, nullable=False),
    Column("ends_on", Date),  # the last day an instance may fall on
    Column("due_time", Time, nullable=False),
    Column("skip_months", ARRAY(Integer), nullable=False, server_default="{}"),
    _created(),
)

chore_instances = Table(
    "chore_instances",
    metadata,
    _id(),
    Column("chore_id", BigInteger, ForeignKey(chores.c.id, ondelete="CASCADE"), nullable=False),
    Column("due_date", Date, nullable=False),  # local to the chore's time zone
    Column("due_at", DateTime(timezone=True), nullable=False),
    Column("done_at", DateTime(timezone=True)),
    _created(),
    UniqueConstraint("chore_id", "due_date"),
)

reminders = Table(
    "reminders",
    metadata,
    _id(),
    Column(
        "instance_id",
        BigInteger,
        ForeignKey(chore_instances.c.id, ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("kind", String(10), nullable=False),  # "due" or "overdue"
    Column("sent_at", DateTime(timezone=True), nullable=False),
)

events = Table(
    "events",
    metadata,
    _id(),
    Column("title", String(200), nullable=False),
    Column("ends_at", DateTime(timezone=True), nullable=False),
    Column("status", String(20), nullable=False, server_default="scheduled"),
    Column("completed_at", DateTime(timezone=True)),
)

credit_holds = Table(
    "credit_holds",
    metadata,
    _id(),
    Column("user_id", BigInteger, ForeignKey(users.c.id, ondelete="CASCADE"), nullable=False),
    Column("amount", Integer, nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("released_at", DateTime(timezone=True)),
)

credit_allocations = Table(
    "credit_allocations",
    metadata,
    Column("user_id", BigInteger, ForeignKey(users.c.id, ondelete="CASCADE"), primary_key=True),
    Column("month", Date, primary_key=True),  # the first day of the month
    Column("amount", Integer, nullable=False),
    _created(),
)

outlooks = Table(
    "outlooks",
    metadata,
    _id(),
    Column("user_id", BigInteger, ForeignKey(users.c.id, ondelete="CASCADE"), nullable=False),
    Column("local_date", Date, nullable=False),
    Column("sent_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("user_id", "local_date"),
)

posts = Table(
    "posts",
    metadata,
    _id(),
    Column("body", Text, nullable=False),
    Column("publish_at", DateTime(timezone=True), nullable=False),
    Column("status", String(20), nullable=False, server_default="scheduled"),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("external_id", String(100)),
    Column("published_at", DateTime(timezone=True)),
    Column("error", Text),
)

_lock = threading.Lock()
_engine: Engine | None = None
_redis: redis.Redis | None = None


def use(engine: Engine | None, client: redis.Redis | None = None) -> None:
    """Make the tasks use ``engine`` (already ``prepare``d) and ``client``: the test seam.

    None goes back to connecting from the environment on next use.
    """
    global _engine, _redis
    _engine, _redis = engine, client


def connect() -> Engine:
    """This process's engine on the example tables, created and seeded on first use."""
    global _engine  # noqa: PLW0603
    with _lock:
        if _engine is None:
            schema = os.environ.get(SCHEMA_ENV, "").strip() or SCHEMA
            base = make_engine(Settings.from_env(), application_name="beatkeeper-examples")
            engine = base.execution_options(schema_translate_map={SCHEMA: schema})
            prepare(engine, seed_if_new=True)
            _engine = engine
        return _engine


def redis_client() -> redis.Redis:
    """A Redis client on ``BEATKEEPER_BROKER_URL``'s server (for cooldown keys)."""
    global _redis  # noqa: PLW0603
    with _lock:
        if _redis is None:
            _redis = redis.Redis.from_url(Settings.from_env().require_broker_url())
        return _redis


def schema_of(engine: Engine) -> str:
    """The schema the example tables are in for ``engine``."""
    translate = engine.get_execution_options().get("schema_translate_map") or {}
    return str(translate.get(SCHEMA, SCHEMA))


def prepare(engine: Engine, *, seed_if_new: bool) -> None:
    """Create the schema and tables if missing; seed them when they were just created."""
    schema = schema_of(engine)
    with engine.begin() as db:
        db.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
        db.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        new = db.execute(select(func.to_regclass(f'"{schema}".users'))).scalar() is None
        metadata.create_all(db, checkfirst=True)
        if new and seed_if_new:
            seed(db, now=datetime.now(UTC))


def seed(db: Connection, *, now: datetime) -> None:
    """A few rows per example, placed around ``now`` so the first runs find work."""
    ids = db.execute(
        insert(users).returning(users.c.id),
        [
            {"name": "aroha", "time_zone": "Pacific/Auckland", "team": None, "credits": 0},
            {"name": "sam", "time_zone": "America/Los_Angeles", "team": None, "credits": 0},
            {"name": "priya", "time_zone": "Asia/Kolkata", "team": None, "credits": 0},
            {"name": "oliver", "time_zone": "Europe/London", "team": "london", "credits": 0},
        ],
    ).scalars()
    user_ids = list(ids)
    today = now.date()
    db.execute(
        insert(chores),
        [
            _chore("Water the plants", "FREQ=DAILY;INTERVAL=2", today, time(8, 0)),
            _chore("Take the bins out", "FREQ=WEEKLY;BYDAY=TU", today, time(19, 0)),
            _chore("Pay rent", "FREQ=MONTHLY;BYMONTHDAY=31", today, time(9, 0)),
            # Due within the reminder lead window from the start, so reminders fire.
            _chore(
                "Stand-up notes",
                "FREQ=DAILY",
                today,
                (now + timedelta(minutes=10)).astimezone(_LONDON).time(),
            ),
        ],
    )
    db.execute(
        insert(events),
        [
            {"title": "Workshop (ended)", "ends_at": now - timedelta(hours=2)},
            {"title": "Webinar (ends soon)", "ends_at": now + timedelta(minutes=3)},
            {"title": "Conference (tomorrow)", "ends_at": now + timedelta(days=1)},
        ],
    )
    db.execute(
        insert(credit_holds),
        [
            {"user_id": user_ids[0], "amount": 5, "expires_at": now - timedelta(hours=1)},
            {"user_id": user_ids[1], "amount": 7, "expires_at": now + timedelta(hours=1)},
        ],
    )
    db.execute(
        insert(posts),
        [
            {"body": "Hello from beatkeeper", "publish_at": now - timedelta(minutes=1)},
            {"body": "x" * 300, "publish_at": now - timedelta(seconds=30)},  # permanently failing
            {"body": "Later, in an hour", "publish_at": now + timedelta(hours=1)},
        ],
    )


def _chore(title: str, rule: str, starts_on: date, due_time: time) -> dict[str, object]:
    return {
        "title": title,
        "rrule": rule,
        "time_zone": "Europe/London",
        "starts_on": starts_on,
        "due_time": due_time.replace(second=0, microsecond=0),
    }
