"""Settings: every BEATKEEPER_* variable, its default, and the message each bad value gets."""

from __future__ import annotations

import dataclasses
import io
import sys
from datetime import timedelta

import pytest

from beatkeeper.settings import (
    Settings,
    SettingsError,
    check_schema_name,
    mask_url,
    normalise_database_url,
)


class _Stream(io.StringIO):
    def __init__(self, *, tty: bool) -> None:
        super().__init__()
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty


def from_env(**variables: str) -> Settings:
    return Settings.from_env({f"BEATKEEPER_{name}": value for name, value in variables.items()})


def error_for(**variables: str) -> str:
    with pytest.raises(SettingsError) as caught:
        from_env(**variables)
    return str(caught.value)


# --- defaults --------------------------------------------------------------------------------


def test_an_empty_environment_gives_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stderr", _Stream(tty=False))
    assert Settings.from_env({}) == Settings(
        database_url=None,
        broker_url=None,
        db_schema="beatkeeper",
        log_format="json",
        log_level="INFO",
        metrics_port=None,
        imports=(),
        namespaces=(),
    )


def test_from_env_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BEATKEEPER_DB_SCHEMA", "from_os")
    assert Settings.from_env().db_schema == "from_os"


def test_empty_and_blank_variables_count_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stderr", _Stream(tty=False))
    blank = {"DATABASE_URL": "", "DB_SCHEMA": "  ", "METRICS_PORT": "", "LOG_LEVEL": ""}
    assert from_env(**blank) == Settings.from_env({})


def test_other_prefixes_are_ignored() -> None:
    settings = Settings.from_env({"DATABASE_URL": "postgresql://elsewhere/db"})
    assert settings.database_url is None


def test_settings_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Settings().db_schema = "other"  # type: ignore[misc]


# --- DATABASE_URL ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://u:p@db:5432/bk", "postgresql+psycopg://u:p@db:5432/bk"),
        ("postgres://u:p@db/bk", "postgresql+psycopg://u:p@db/bk"),
        ("postgresql+psycopg://u@db/bk", "postgresql+psycopg://u@db/bk"),
        ("POSTGRESQL://u@db/bk", "postgresql+psycopg://u@db/bk"),
        ("postgresql:///bk?host=/run/pg", "postgresql+psycopg:///bk?host=/run/pg"),
    ],
)
def test_database_url_is_normalised_for_psycopg3(given: str, expected: str) -> None:
    assert from_env(DATABASE_URL=given).database_url == expected


def test_database_url_built_in_code_is_normalised_too() -> None:
    assert Settings(database_url="postgres://h/db").database_url == "postgresql+psycopg://h/db"


@pytest.mark.parametrize(
    "url", ["mysql://u:p@h/db", "postgresql+psycopg2://u@h/db", "db.example.com:5432", "sqlite://"]
)
def test_database_url_must_be_postgresql(url: str) -> None:
    message = error_for(DATABASE_URL=url)
    assert message.startswith("BEATKEEPER_DATABASE_URL must be a PostgreSQL URL such as ")
    assert "postgresql://user:pass@host:5432/db" in message


def test_a_rejected_database_url_is_shown_without_its_password() -> None:
    message = error_for(DATABASE_URL="mysql://admin:hunter2@db/bk")
    assert "hunter2" not in message
    assert "mysql://admin:***@db/bk" in message


def test_require_database_url_explains_how_to_set_it() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings().require_database_url()
    assert str(caught.value) == (
        "BEATKEEPER_DATABASE_URL is not set: point it at PostgreSQL, "
        "e.g. postgresql://user:pass@host:5432/db"
    )


def test_require_database_url_returns_the_normalised_url() -> None:
    settings = from_env(DATABASE_URL="postgres://h/db")
    assert settings.require_database_url() == "postgresql+psycopg://h/db"


# --- BROKER_URL ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "redis://h:6379/0",
        "rediss://:pw@h:6380/1",
        "redis+socket:///tmp/r.sock",
        "amqp://guest:guest@rabbit:5672//",
        "memory://",
    ],
)
def test_broker_url_accepts_redis_and_amqp_urls(url: str) -> None:
    assert from_env(BROKER_URL=url).broker_url == url


@pytest.mark.parametrize("url", ["kafka://user:secret@k:9092", "localhost:6379"])
def test_broker_url_must_be_a_known_broker(url: str) -> None:
    message = error_for(BROKER_URL=url)
    assert message.startswith("BEATKEEPER_BROKER_URL must be a broker URL such as redis://")
    assert "secret" not in message


def test_require_broker_url_explains_how_to_set_it() -> None:
    with pytest.raises(SettingsError, match=r"^BEATKEEPER_BROKER_URL is not set: point it at"):
        Settings().require_broker_url()
    assert from_env(BROKER_URL="redis://h/0").require_broker_url() == "redis://h/0"


# --- DB_SCHEMA -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["beatkeeper", "bk_test_0a1b", "_private", "a" * 63])
def test_db_schema_accepts_plain_identifiers(name: str) -> None:
    assert from_env(DB_SCHEMA=name).db_schema == name


@pytest.mark.parametrize(
    "name", ["Beatkeeper", "1st", "bk-test", 'bk"; DROP TABLE runs; --', "a" * 64, "bk.runs"]
)
def test_db_schema_must_be_a_lower_case_identifier(name: str) -> None:
    assert error_for(DB_SCHEMA=name) == (
        "BEATKEEPER_DB_SCHEMA must be a lower-case SQL identifier (a-z, 0-9 and _, "
        f"not starting with a digit, at most 63 characters), got {name!r}"
    )


def test_db_schema_must_not_be_a_system_name() -> None:
    assert error_for(DB_SCHEMA="pg_beatkeeper") == (
        "BEATKEEPER_DB_SCHEMA must not start with 'pg_' (PostgreSQL reserves those names "
        "for system schemas), got 'pg_beatkeeper'"
    )


def test_db_schema_is_checked_when_built_in_code() -> None:
    with pytest.raises(SettingsError, match="BEATKEEPER_DB_SCHEMA"):
        Settings(db_schema="Bad-Name")
    assert check_schema_name("fine") == "fine"


# --- LOG_FORMAT and LOG_LEVEL ----------------------------------------------------------------


@pytest.mark.parametrize(("tty", "expected"), [(True, "console"), (False, "json")])
def test_log_format_defaults_to_console_on_a_terminal(
    monkeypatch: pytest.MonkeyPatch, tty: bool, expected: str
) -> None:
    monkeypatch.setattr(sys, "stderr", _Stream(tty=tty))
    assert Settings.from_env({}).log_format == expected


def test_log_format_defaults_to_json_without_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stderr", None)
    assert Settings.from_env({}).log_format == "json"


@pytest.mark.parametrize(("given", "expected"), [("json", "json"), ("Console", "console")])
def test_log_format_is_read(monkeypatch: pytest.MonkeyPatch, given: str, expected: str) -> None:
    monkeypatch.setattr(sys, "stderr", _Stream(tty=True))
    assert from_env(LOG_FORMAT=given).log_format == expected


def test_log_format_must_be_json_or_console() -> None:
    assert error_for(LOG_FORMAT="yaml") == (
        "BEATKEEPER_LOG_FORMAT must be 'json' or 'console', got 'yaml'"
    )


@pytest.mark.parametrize("level", ["DEBUG", "info", "Warning", "ERROR", "critical"])
def test_log_level_is_read_case_insensitively(level: str) -> None:
    assert from_env(LOG_LEVEL=level).log_level == level.upper()


def test_log_level_must_be_a_logging_level() -> None:
    assert error_for(LOG_LEVEL="verbose") == (
        "BEATKEEPER_LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got 'verbose'"
    )


# --- METRICS_PORT ----------------------------------------------------------------------------


@pytest.mark.parametrize("port", ["1", "9090", "65535", " 8000 "])
def test_metrics_port_is_an_int(port: str) -> None:
    assert from_env(METRICS_PORT=port).metrics_port == int(port)


@pytest.mark.parametrize("port", ["0", "65536", "-1", "http", "80.5"])
def test_metrics_port_must_be_a_port_number(port: str) -> None:
    assert error_for(METRICS_PORT=port) == (
        f"BEATKEEPER_METRICS_PORT must be a TCP port number between 1 and 65535, got {port!r}"
    )


# --- IMPORTS and NAMESPACES ------------------------------------------------------------------


def test_imports_are_a_comma_separated_list() -> None:
    settings = from_env(IMPORTS=" myapp.tasks, other ,, _private.mod ")
    assert settings.imports == ("myapp.tasks", "other", "_private.mod")


@pytest.mark.parametrize("bad", ["my-app.tasks", "myapp..tasks", "myapp/tasks", "1tasks"])
def test_imports_must_be_module_names(bad: str) -> None:
    assert error_for(IMPORTS=f"ok.tasks,{bad}") == (
        "BEATKEEPER_IMPORTS must list Python module names separated by commas "
        f"(e.g. myapp.tasks,other.tasks); {bad!r} is not a module name"
    )


def test_namespaces_are_a_comma_separated_list() -> None:
    assert from_env(NAMESPACES="default, team-a,kube-system").namespaces == (
        "default",
        "team-a",
        "kube-system",
    )


@pytest.mark.parametrize("bad", ["Team", "team_a", "-team", "team-", "a" * 64])
def test_namespaces_must_be_namespace_names(bad: str) -> None:
    assert error_for(NAMESPACES=f"default,{bad}") == (
        "BEATKEEPER_NAMESPACES must list Kubernetes namespace names separated by commas "
        "(lower-case letters, digits and '-', at most 63 characters); "
        f"{bad!r} is not a namespace name"
    )


# --- passwords never shown -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql://bk:s3cret@db:5432/bk", "postgresql://bk:***@db:5432/bk"),
        ("redis://:s3cret@redis:6379/0", "redis://:***@redis:6379/0"),
        ("postgresql://bk:p%40ss@db/bk", "postgresql://bk:***@db/bk"),
        ("postgresql://bk@db/bk?password=s3cret&sslmode=require", None),
        ("postgresql://bk@db/bk", "postgresql://bk@db/bk"),
        (
            "postgresql://postgres:@/postgres?host=/tmp/x",
            "postgresql://postgres:@/postgres?host=/tmp/x",
        ),
        ("postgresql://bk:s3cret@[::1/bk", "postgresql://***"),
    ],
)
def test_mask_url_hides_passwords(url: str, masked: str | None) -> None:
    shown = mask_url(url)
    assert "s3cret" not in shown
    assert "p%40ss" not in shown
    if masked is not None:
        assert shown == masked
    else:
        assert "password=***" in shown
        assert "sslmode=require" in shown


def test_repr_masks_passwords() -> None:
    settings = from_env(
        DATABASE_URL="postgresql://bk:s3cret@db/bk", BROKER_URL="redis://:s3cret@r:6379/0"
    )
    shown = repr(settings)
    assert "s3cret" not in shown
    assert "database_url='postgresql+psycopg://bk:***@db/bk'" in shown
    assert "broker_url='redis://:***@r:6379/0'" in shown
    assert "db_schema='beatkeeper'" in shown


def test_normalise_names_the_variable_it_was_given() -> None:
    with pytest.raises(SettingsError, match=r"^BEATKEEPER_TEST_DATABASE_URL must be"):
        normalise_database_url("mysql://h/db", variable="BEATKEEPER_TEST_DATABASE_URL")


def test_redeliver_after_defaults_to_five_minutes_and_may_be_turned_off() -> None:
    assert Settings.from_env({}).redeliver_after == timedelta(minutes=5)
    assert Settings.from_env({"BEATKEEPER_REDELIVER_AFTER": "90s"}).redeliver_after == timedelta(
        seconds=90
    )
    assert Settings.from_env({"BEATKEEPER_REDELIVER_AFTER": "off"}).redeliver_after is None


@pytest.mark.parametrize("value", ["soon", "0s", "5 minutes"])
def test_a_bad_redeliver_after_names_the_variable(value: str) -> None:
    with pytest.raises(SettingsError, match="BEATKEEPER_REDELIVER_AFTER"):
        Settings.from_env({"BEATKEEPER_REDELIVER_AFTER": value})


# --- a database URL whose password needs percent-encoding ------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://bk:p@ssword@db.example.com:5432/bk",
        "postgresql://bk:hunter@2:word@db.example.com/bk",
        "postgres://bk:se:cr@et@db/bk",
    ],
)
def test_an_unescaped_at_in_the_password_is_one_line_without_the_password(url: str) -> None:
    assert error_for(DATABASE_URL=url) == (
        "BEATKEEPER_DATABASE_URL: the user name or password contains '@' or ':' unescaped: "
        "percent-encode @ as %40 and : as %3A"
    )


def test_a_port_that_is_not_a_number_is_one_line_without_it() -> None:
    message = error_for(DATABASE_URL="postgresql://bk@db:pa55word/bk")
    assert message == (
        "BEATKEEPER_DATABASE_URL: the port after the host is not a number; if the password "
        "contains '@' or ':', percent-encode @ as %40 and : as %3A"
    )


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://bk:p%40ss%3Aword@db:5432/bk",
        "postgresql://bk:pa:ss@db:5432/bk",  # a colon inside the password reads unambiguously
        "postgresql://bk:pa/ss#?@db/bk",
        "postgresql://bk:s3cret@[::1]:5432/bk",
        "postgresql://postgres:@/postgres?host=/tmp/socket",
        "postgresql:///bk",
    ],
)
def test_urls_that_read_unambiguously_are_accepted(url: str) -> None:
    assert from_env(DATABASE_URL=url).database_url is not None


def test_a_bad_database_url_stops_settings_built_in_code_too() -> None:
    with pytest.raises(SettingsError, match="percent-encode @ as %40"):
        Settings(database_url="postgresql://bk:p@ss@db/bk")


# --- per-schedule metric labels ---------------------------------------------------------------


def test_schedule_labels_are_off_by_default_and_bounded() -> None:
    settings = from_env()
    assert (settings.metrics_schedule_labels, settings.metrics_schedule_limit) == ("none", 500)
    asked = from_env(METRICS_SCHEDULE_LABELS="Schedule", METRICS_SCHEDULE_LIMIT="50")
    assert (asked.metrics_schedule_labels, asked.metrics_schedule_limit) == ("schedule", 50)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("METRICS_SCHEDULE_LABELS", "pod"),
        ("METRICS_SCHEDULE_LIMIT", "0"),
        ("METRICS_SCHEDULE_LIMIT", "lots"),
        ("METRICS_SCHEDULE_LIMIT", "1000000"),
    ],
)
def test_bad_schedule_label_settings_name_the_variable(variable: str, value: str) -> None:
    assert error_for(**{variable: value}).startswith(f"BEATKEEPER_{variable} must be ")
