"""The message contract between Beat and workers: what Beat builds is what a worker reads."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from beatkeeper_worker import messages
from beatkeeper_worker.messages import Template
from celery import Celery
from hypothesis import given
from hypothesis import strategies as st

from beatkeeper.decisions.ownership import Message

NOW = datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
APP = Celery("contract", set_as_current=False)


def template(schedule: str = "team/report", schedule_id: uuid.UUID | None = None) -> Template:
    return Template(
        schedule=schedule,
        schedule_id=str(schedule_id or uuid.uuid4()),
        args=[1, "two"],
        kwargs={"three": 3},
        argsrepr="[1, 'two']",
        kwargsrepr="{'three': 3}",
        queue="celery",
        priority=None,
        expires=timedelta(minutes=5),
        starting_deadline=None,
        time_limit=None,
        soft_time_limit=None,
    )


def built(run_id: uuid.UUID, made: Template, *, attempt: int = 2) -> messages.Outgoing:
    return messages.message_for(
        APP,
        run_id=run_id,
        task="app.report",
        planned_at=NOW,
        due_at=NOW,
        attempt=attempt,
        max_attempts=3,
        template=made,
        now=NOW,
        origin="tests",
    )


@given(
    namespace=st.from_regex(r"[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?", fullmatch=True),
    name=st.from_regex(r"[a-z0-9]([-.a-z0-9]{0,30}[a-z0-9])?", fullmatch=True),
    run_id=st.uuids(),
    schedule_id=st.uuids(),
)
def test_a_workers_reading_of_the_headers_is_what_beat_put_in(
    namespace: str, name: str, run_id: uuid.UUID, schedule_id: uuid.UUID
) -> None:
    message = built(run_id, template(f"{namespace}/{name}", schedule_id))
    read = messages.message_of_headers(message.headers)
    assert read == Message(run_id, "app.report", schedule_id, f"{namespace}/{name}")


def test_a_task_request_carrying_the_headers_is_read_as_its_delivery() -> None:
    run_id, schedule_id = uuid.uuid4(), uuid.uuid4()
    headers = built(run_id, template(schedule_id=schedule_id)).headers
    # Celery sets every header of a protocol 2 message as an attribute of the request.
    request = SimpleNamespace(**headers, hostname="celery@h", delivery_info={"redelivered": True})
    assert messages.is_run(request)
    delivery = messages.delivery_of(request, "app.report")
    assert delivery.message() == Message(run_id, "app.report", schedule_id, "team/report")
    assert (delivery.hostname, delivery.redelivered, delivery.attempt) == ("celery@h", True, 2)
    assert delivery.planned_at == NOW.isoformat()


def test_a_message_without_the_headers_is_not_a_run() -> None:
    assert messages.message_of_headers({"id": str(uuid.uuid4()), "task": "app.x"}) is None
    assert not messages.is_run(SimpleNamespace(id="x"))


def test_every_contract_header_is_set_and_nothing_else_of_ours() -> None:
    headers = built(uuid.uuid4(), template()).headers
    ours = {key for key in headers if key.startswith(messages.HEADER_PREFIX)}
    assert ours == set(messages.HEADERS)


def test_malformed_run_headers_raise_rather_than_name_a_run() -> None:
    headers = {"id": "not-a-uuid", "task": "t", messages.SCHEDULE_ID: str(uuid.uuid4())}
    with pytest.raises(ValueError, match="badly formed"):
        messages.message_of_headers(headers)
