"""The one settings object every beatkeeper component reads its configuration from.

Configuration comes from environment variables with the ``BEATKEEPER_`` prefix and nowhere
else; ``Settings.from_env()`` reads and checks them all at once so that a bad value stops a
process at start-up with a message naming the variable, never with a traceback later on.

This module must not connect to anything, configure logging or import SQLAlchemy, Celery or
kopf: it only turns strings into checked values. It must never put a password in a message
or a ``repr``; ``mask_url()`` is how a URL is shown to people.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Literal, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from beatkeeper.durations import parse_duration

__all__ = [
    "PREFIX",
    "LogFormat",
    "ScheduleLabelMode",
    "Settings",
    "SettingsError",
    "check_namespace",
    "check_schema_name",
    "mask_url",
    "normalise_database_url",
]

PREFIX = "BEATKEEPER_"

LogFormat = Literal["json", "console"]
ScheduleLabelMode = Literal["none", "namespace", "schedule"]

_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_POSTGRES_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg")
# memory:// is kombu's in-process transport, which tests use instead of a server (Beat
# refuses it: it publishes to Redis and RabbitMQ only).
_BROKER_SCHEMES = (
    "redis",
    "rediss",
    "redis+socket",
    "sentinel",
    "amqp",
    "amqps",
    "pyamqp",
    "memory",
)
# Lower case only: PostgreSQL folds unquoted names to lower case, so "Beatkeeper" would name
# a different schema in psql than in our quoted DDL. 63 bytes is PostgreSQL's NAMEDATALEN-1.
_SQL_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")
# A Kubernetes namespace name is an RFC 1123 label.
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_SECRET_QUERY_KEYS = frozenset({"password", "sslpassword"})
_MASK = "***"

_T = TypeVar("_T")


class SettingsError(ValueError):
    """A setting has a value beatkeeper cannot use; the message names the variable."""


def mask_url(url: str) -> str:
    """The URL with any password replaced by ``***``, safe for logs and error messages."""
    try:
        parts = urlsplit(url)
    except ValueError:
        # Unparseable (a stray "[" in the host): show nothing that could be a secret.
        return f"{url.partition(':')[0]}://{_MASK}"
    netloc = parts.netloc
    userinfo, at, hostinfo = netloc.rpartition("@")
    user, colon, password = userinfo.partition(":")
    if at and colon and password:
        netloc = f"{user}:{_MASK}@{hostinfo}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(key in _SECRET_QUERY_KEYS for key, _ in pairs):
            masked = [(key, _MASK if key in _SECRET_QUERY_KEYS else val) for key, val in pairs]
            query = urlencode(masked, safe="/*:")
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def normalise_database_url(url: str, *, variable: str = f"{PREFIX}DATABASE_URL") -> str:
    """Turn a ``postgresql://`` or ``postgres://`` URL into SQLAlchemy's psycopg 3 form."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in _POSTGRES_SCHEMES:
        raise SettingsError(
            f"{variable} must be a PostgreSQL URL such as "
            f"postgresql://user:pass@host:5432/db, got {mask_url(url)!r}"
        )
    _check_authority(rest, variable)
    return f"postgresql+psycopg://{rest}"


_ENCODE_HINT = "percent-encode @ as %40 and : as %3A"
# How SQLAlchemy reads user and password: the user up to ':' or '/', the password up to '@'.
_USERINFO = re.compile(r"[^:/]*(?::[^@]*)?@")


def _check_authority(rest: str, variable: str) -> None:
    """Refuse what SQLAlchemy would misread: it ends the password at the first ``@``, so a
    second ``@`` puts the password's tail into the host (and into every connection error).

    The messages never quote the URL: whatever is misplaced may be part of the password.
    """
    userinfo = _USERINFO.match(rest)
    after = rest[userinfo.end() :] if userinfo else rest
    if userinfo and "@" in after.partition("?")[0]:
        raise SettingsError(
            f"{variable}: the user name or password contains '@' or ':' unescaped: {_ENCODE_HINT}"
        )
    hostport = re.split(r"[/?]", after, maxsplit=1)[0]
    port = hostport.rpartition("]")[2] if hostport.startswith("[") else hostport
    _, colon, digits = port.partition(":")
    if colon and digits and not digits.isdigit():
        raise SettingsError(
            f"{variable}: the port after the host is not a number; "
            f"if the password contains '@' or ':', {_ENCODE_HINT}"
        )


@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings:
    """Checked configuration; build it with ``Settings.from_env()`` (or directly in tests)."""

    # repr=False: URLs may carry passwords; __repr__ below shows them masked.
    database_url: str | None = dataclasses.field(default=None, repr=False)
    broker_url: str | None = dataclasses.field(default=None, repr=False)
    db_schema: str = "beatkeeper"
    log_format: LogFormat = "json"
    log_level: str = "INFO"
    metrics_port: int | None = None
    #: Which labels ``beatkeeper_schedule_runs_total`` gets per schedule, and how many values
    #: at most per process (the rest share ``other``): bounded series on any fleet.
    metrics_schedule_labels: ScheduleLabelMode = "none"
    metrics_schedule_limit: int = 500
    imports: tuple[str, ...] = ()
    namespaces: tuple[str, ...] = ()
    #: A run ``enqueued`` this long, not started and with its queue empty, is published
    #: again (its message was lost between a Redis broker and a worker); None: never.
    redeliver_after: timedelta | None = timedelta(minutes=5)
    #: The tenancy policy file (``beatkeeper.policy``); None: every namespace may run anything.
    policy_file: str | None = None

    def __post_init__(self) -> None:
        # Settings built in code get the same checks and normalisation as the environment.
        if self.database_url is not None:
            object.__setattr__(self, "database_url", normalise_database_url(self.database_url))
        check_schema_name(self.db_schema)

    def __repr__(self) -> str:
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for name in ("database_url", "broker_url"):
            if fields[name] is not None:
                fields[name] = mask_url(fields[name])
        inner = ", ".join(f"{name}={value!r}" for name, value in fields.items())
        return f"Settings({inner})"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read every ``BEATKEEPER_*`` variable; raise ``SettingsError`` on the first bad one."""
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            # An empty variable counts as unset: Helm and docker-compose often render "".
            value = env.get(PREFIX + name, "").strip()
            return value or None

        return cls(
            database_url=get("DATABASE_URL"),
            broker_url=_optional(get("BROKER_URL"), "BROKER_URL", _parse_broker_url),
            db_schema=get("DB_SCHEMA") or "beatkeeper",
            log_format=_optional(get("LOG_FORMAT"), "LOG_FORMAT", _parse_log_format)
            or _default_log_format(),
            log_level=_optional(get("LOG_LEVEL"), "LOG_LEVEL", _parse_log_level) or "INFO",
            metrics_port=_optional(get("METRICS_PORT"), "METRICS_PORT", _parse_port),
            metrics_schedule_labels=_optional(
                get("METRICS_SCHEDULE_LABELS"), "METRICS_SCHEDULE_LABELS", _parse_label_mode
            )
            or "none",
            metrics_schedule_limit=_optional(
                get("METRICS_SCHEDULE_LIMIT"), "METRICS_SCHEDULE_LIMIT", _parse_series_limit
            )
            or 500,
            imports=_parse_list(get("IMPORTS"), "IMPORTS", _check_module_name),
            namespaces=_parse_list(get("NAMESPACES"), "NAMESPACES", check_namespace),
            redeliver_after=_parse_redeliver_after(get("REDELIVER_AFTER")),
            policy_file=get("POLICY_FILE"),
        )

    def require_database_url(self) -> str:
        """The SQLAlchemy URL of the database, or a ``SettingsError`` saying how to set it."""
        if self.database_url is None:
            raise SettingsError(
                f"{PREFIX}DATABASE_URL is not set: point it at PostgreSQL, "
                "e.g. postgresql://user:pass@host:5432/db"
            )
        return self.database_url

    def require_broker_url(self) -> str:
        """The Celery broker URL, or a ``SettingsError`` saying how to set it."""
        if self.broker_url is None:
            raise SettingsError(
                f"{PREFIX}BROKER_URL is not set: point it at Redis, e.g. redis://host:6379/0"
            )
        return self.broker_url


def _optional(raw: str | None, name: str, parse: Callable[[str, str], _T]) -> _T | None:
    return None if raw is None else parse(raw, PREFIX + name)


def _default_log_format() -> LogFormat:
    # Humans read a terminal; everything else (containers, CI) feeds a log pipeline.
    isatty = getattr(sys.stderr, "isatty", None)
    return "console" if isatty is not None and isatty() else "json"


def check_schema_name(value: str) -> str:
    """``value`` if it can name beatkeeper's schema unquoted, else a ``SettingsError``."""
    if not _SQL_IDENTIFIER.fullmatch(value):
        raise SettingsError(
            f"{PREFIX}DB_SCHEMA must be a lower-case SQL identifier (a-z, 0-9 and _, "
            f"not starting with a digit, at most 63 characters), got {value!r}"
        )
    if value.startswith("pg_"):
        raise SettingsError(
            f"{PREFIX}DB_SCHEMA must not start with 'pg_' (PostgreSQL reserves those "
            f"names for system schemas), got {value!r}"
        )
    return value


def _parse_broker_url(value: str, variable: str) -> str:
    scheme = value.partition("://")[0].lower()
    if "://" not in value or scheme not in _BROKER_SCHEMES:
        raise SettingsError(
            f"{variable} must be a broker URL such as redis://host:6379/0 (schemes: "
            f"{', '.join(_BROKER_SCHEMES)}), got {mask_url(value)!r}"
        )
    return value


def _parse_log_format(value: str, variable: str) -> LogFormat:
    lowered = value.lower()
    if lowered == "json":
        return "json"
    if lowered == "console":
        return "console"
    raise SettingsError(f"{variable} must be 'json' or 'console', got {value!r}")


def _parse_log_level(value: str, variable: str) -> str:
    upper = value.upper()
    if upper not in _LOG_LEVELS:
        raise SettingsError(f"{variable} must be one of {', '.join(_LOG_LEVELS)}, got {value!r}")
    return upper


def _parse_redeliver_after(value: str | None) -> timedelta | None:
    if value is None:
        return timedelta(minutes=5)
    if value.lower() in {"off", "never"}:
        return None
    try:
        after = parse_duration(value)
    except ValueError as error:
        raise SettingsError(f"{PREFIX}REDELIVER_AFTER: {error} (or 'off')") from None
    if after < timedelta(seconds=1):
        raise SettingsError(
            f"{PREFIX}REDELIVER_AFTER must be at least 1s (or 'off'), got {value!r}"
        )
    return after


def _parse_label_mode(value: str, variable: str) -> ScheduleLabelMode:
    modes: tuple[ScheduleLabelMode, ...] = ("none", "namespace", "schedule")
    for mode in modes:
        if value.lower() == mode:
            return mode
    raise SettingsError(f"{variable} must be one of none, namespace, schedule; got {value!r}")


def _parse_series_limit(value: str, variable: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= 100_000:
        raise SettingsError(f"{variable} must be a whole number from 1 to 100000, got {value!r}")
    return int(value)


def _parse_port(value: str, variable: str) -> int:
    try:
        port = int(value)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise SettingsError(
            f"{variable} must be a TCP port number between 1 and 65535, got {value!r}"
        )
    return port


def _parse_list(raw: str | None, name: str, check: Callable[[str, str], None]) -> tuple[str, ...]:
    if raw is None:
        return ()
    items = tuple(item.strip() for item in raw.split(",") if item.strip())
    for item in items:
        check(item, PREFIX + name)
    return items


def _check_module_name(value: str, variable: str) -> None:
    if not all(part.isidentifier() for part in value.split(".")):
        raise SettingsError(
            f"{variable} must list Python module names separated by commas "
            f"(e.g. myapp.tasks,other.tasks); {value!r} is not a module name"
        )


def check_namespace(value: str, variable: str) -> None:
    """Nothing if ``value`` is a namespace name, else a ``SettingsError`` naming ``variable``."""
    if not _DNS_LABEL.fullmatch(value):
        raise SettingsError(
            f"{variable} must list Kubernetes namespace names separated by commas "
            f"(lower-case letters, digits and '-', at most 63 characters); "
            f"{value!r} is not a namespace name"
        )
