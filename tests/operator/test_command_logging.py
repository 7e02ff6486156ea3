"""``beatkeeper-operator`` logs as BEATKEEPER_LOG_FORMAT and BEATKEEPER_LOG_LEVEL say."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import beatkeeper_operator.__main__ as command
import pytest

from beatkeeper.settings import Settings


@pytest.fixture
def root_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    kopf_level = logging.getLogger("kopf").level
    yield
    root.handlers, root.level = handlers, level
    logging.getLogger("kopf").setLevel(kopf_level)


def test_the_operator_logs_json_at_the_configured_level(
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    settings: Settings,
    root_logging: None,
) -> None:
    monkeypatch.setenv("BEATKEEPER_DATABASE_URL", settings.require_database_url())
    monkeypatch.setenv("BEATKEEPER_LOG_FORMAT", "json")
    monkeypatch.setenv("BEATKEEPER_LOG_LEVEL", "DEBUG")
    monkeypatch.delenv("BEATKEEPER_NAMESPACES", raising=False)

    def operator_run(**_: Any) -> None:
        logging.getLogger("beatkeeper_operator.handlers").debug("reconciled team-a/nightly")

    monkeypatch.setattr(command.kopf, "run", operator_run)
    monkeypatch.setattr(command, "configure_collector", lambda: None)
    command.main([])

    lines = [
        json.loads(line) for line in capfd.readouterr().err.splitlines() if line.startswith("{")
    ]
    logged = [line for line in lines if line.get("event") == "reconciled team-a/nightly"]
    assert logged, lines
    assert logged[0]["level"] == "debug"
    assert logged[0]["logger"] == "beatkeeper_operator.handlers"
