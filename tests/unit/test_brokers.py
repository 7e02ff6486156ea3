"""The broker port without a broker: which adapter a URL gets, and what each one sends.

What the adapters do against real servers is the broker contract
(``tests/integration/test_broker_contract.py``).
"""

from __future__ import annotations

import pytest
from beatkeeper_worker import brokers, tracking
from beatkeeper_worker.app import make_app
from beatkeeper_worker.brokers.rabbitmq import RabbitMQBroker
from beatkeeper_worker.brokers.redis import RedisBroker
from celery import Celery

from beatkeeper.settings import Settings, SettingsError


@pytest.mark.parametrize(
    ("url", "adapter"),
    [
        ("redis://127.0.0.1:1/0", RedisBroker),
        ("rediss://:secret@127.0.0.1:1/0", RedisBroker),
        ("sentinel://127.0.0.1:1", RedisBroker),
        ("amqp://guest:guest@127.0.0.1:1//", RabbitMQBroker),
        ("amqps://guest:guest@127.0.0.1:1//", RabbitMQBroker),
        ("pyamqp://guest:guest@127.0.0.1:1//", RabbitMQBroker),
    ],
)
def test_the_url_alone_chooses_the_adapter_without_connecting(url: str, adapter: type) -> None:
    assert type(brokers.for_app(make_app(Settings(broker_url=url)))) is adapter


def test_a_broker_beat_cannot_publish_to_is_one_line_naming_the_url() -> None:
    with pytest.raises(SettingsError, match=r"^Beat publishes to Redis or RabbitMQ only, not to"):
        brokers.for_app(make_app(Settings(broker_url="memory://")))


def test_only_redis_can_lose_a_message_it_took() -> None:
    assert (RedisBroker.loses_messages, RabbitMQBroker.loses_messages) == (True, False)


@pytest.mark.parametrize(("priority", "amqp_priority"), [(None, 9), (0, 9), (1, 8), (5, 4), (9, 0)])
def test_rabbitmq_is_sent_priorities_the_other_way_round(
    priority: int | None, amqp_priority: int
) -> None:
    broker = RabbitMQBroker(make_app(Settings(broker_url="amqp://127.0.0.1:1//")))
    properties = {} if priority is None else {"priority": priority}
    assert broker.properties({"expiration": 5.0, **properties}) == {
        "expiration": 5.0,
        "priority": amqp_priority,
    }


def test_redis_is_sent_priorities_as_they_are() -> None:
    broker = RedisBroker(make_app(Settings(broker_url="redis://127.0.0.1:1/0")))
    assert broker.properties({"priority": 3}) == {"priority": 3}
    assert broker.properties({}) == {}


def test_beat_and_tracked_workers_declare_queues_with_the_same_max_priority() -> None:
    beat = make_app(Settings(broker_url="amqp://127.0.0.1:1//"))
    worker = Celery("userapp", broker="amqp://127.0.0.1:1//", set_as_current=False)
    tracking.install(worker)
    declared = {app.amqp.queues["q"].queue_arguments["x-max-priority"] for app in (beat, worker)}
    assert declared == {brokers.MAX_PRIORITY}


def test_an_app_that_sets_its_own_max_priority_keeps_it() -> None:
    worker = Celery("userapp", broker="amqp://127.0.0.1:1//", set_as_current=False)
    worker.conf.task_queue_max_priority = 5
    tracking.install(worker)
    assert worker.conf.task_queue_max_priority == 5
