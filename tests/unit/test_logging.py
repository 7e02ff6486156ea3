"""One logging setup: stdlib and structlog lines alike, in JSON or for a console."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from beatkeeper import logging as beatkeeper_logging
from beatkeeper.settings import Settings


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers, root.level = handlers, level
    structlog.reset_defaults()


def configured(log_format: str, level: str = "INFO") -> io.StringIO:
    out = io.StringIO()
    settings = Settings(log_format=log_format, log_level=level)
    beatkeeper_logging.configure(settings, stream=out)
    return out


def lines(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


RUN = {
    "schedule": "team/nightly",
    "run_id": "6f1c0e8e-0000-4000-8000-000000000001",
    "planned_at": "2026-01-01T00:00:00+00:00",
    "attempt": 2,
    "task_id": "6f1c0e8e-0000-4000-8000-000000000001",
}


@pytest.mark.usefixtures("restore_logging")
def test_stdlib_lines_in_a_run_are_json_with_the_run_fields() -> None:
    out = configured("json")
    with beatkeeper_logging.run_context(**RUN):
        logging.getLogger("celery.app.trace").info("Task %s succeeded", "x")
    logging.getLogger("beatkeeper.worker").warning("outside any run")
    inside, outside = lines(out)
    assert inside["event"] == "Task x succeeded"
    assert inside["level"] == "info"
    assert inside["logger"] == "celery.app.trace"
    assert {key: inside[key] for key in beatkeeper_logging.RUN_FIELDS} == {
        "schedule": "nightly",
        "namespace": "team",
        "run_id": RUN["run_id"],
        "planned_at": RUN["planned_at"],
        "attempt": 2,
        "task_id": RUN["task_id"],
    }
    assert "timestamp" in inside
    assert outside["event"] == "outside any run"
    assert not set(beatkeeper_logging.RUN_FIELDS) & set(outside)


@pytest.mark.usefixtures("restore_logging")
def test_structlog_lines_come_out_the_same_way() -> None:
    out = configured("json")
    with beatkeeper_logging.run_context(**RUN):
        structlog.get_logger("beatkeeper.beat").info("published %d runs", 3, extra_key="v")
    [line] = lines(out)
    assert line["event"] == "published 3 runs"
    assert line["extra_key"] == "v"
    assert line["schedule"] == "nightly"


@pytest.mark.usefixtures("restore_logging")
def test_exceptions_are_part_of_the_json_line() -> None:
    out = configured("json")
    try:
        int("bad")
    except ValueError:
        logging.getLogger("x").exception("failed")
    [line] = lines(out)
    assert "ValueError: invalid literal for int()" in str(line["exception"])


@pytest.mark.usefixtures("restore_logging")
def test_console_lines_are_plain_text_at_the_configured_level() -> None:
    out = configured("console", level="WARNING")
    logging.getLogger("celery.worker").info("hidden")
    with beatkeeper_logging.run_context(**RUN):
        logging.getLogger("celery.worker").warning("shown")
    [line] = out.getvalue().splitlines()
    assert "shown" in line
    assert "schedule=nightly" in line
    assert "\x1b[" not in line  # no colours when not writing to a terminal


def raise_and_log(logger: str, message: str, *args: object) -> None:
    try:
        int("boom")
    except ValueError:
        logging.getLogger(logger).error(message, *args, exc_info=True)


@pytest.mark.usefixtures("restore_logging")
def test_a_failed_tasks_line_has_no_traceback_unless_debug() -> None:
    out = configured("console")
    raise_and_log("celery.app.trace", "Task %s raised unexpected: %r", "app.x", ValueError("boom"))
    assert out.getvalue().count("\n") == 1
    assert "raised unexpected: ValueError('boom')" in out.getvalue()
    assert "Traceback" not in out.getvalue()

    out = configured("console", level="DEBUG")
    raise_and_log("celery.app.trace", "Task %s raised unexpected: %r", "app.x", ValueError("boom"))
    assert "Traceback" in out.getvalue()


@pytest.mark.usefixtures("restore_logging")
def test_an_unregistered_task_is_one_line_without_the_raw_message() -> None:
    out = configured("console")
    report = (
        "Received unregistered task of type %s.\nThe message has been ignored and discarded.\n"
        "\nThe full contents of the message body was:\n%s\n\nheaders:\n%s\n"
    )
    raise_and_log(
        "celery.worker.consumer.consumer", report, "'app.missing'", "[[], {}]", {"id": "x"}
    )
    [line] = out.getvalue().splitlines()
    assert "Received unregistered task of type 'app.missing': no module the worker" in line
    assert "[[], {}]" not in line
