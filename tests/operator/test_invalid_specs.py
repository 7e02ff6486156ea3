"""Specs that used to fail deep inside the reconcile are a permanent InvalidSpec, not retries."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from beatkeeper_operator import reconcile
from harness import create, eventually, manifest, ready
from sqlalchemy import Engine

from beatkeeper.policy import Policy
from beatkeeper.store.schedules import RefusedByDatabaseError


def nested(depth: int) -> object:
    value: object = "leaf"
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("name", "spec", "field"),
    [
        ("nul", {"kwargs": {"note": "a\u0000b"}}, "spec.kwargs.note: contains a NUL character"),
        ("deep", {"kwargs": {"tree": nested(300)}}, "is nested deeper than 64 levels"),
        ("ancient", {"startTime": "0001-01-01T00:00:00Z"}, "spec.startTime: 0001-01-01"),
        ("far", {"cron": None, "interval": "99999999999w"}, "spec.interval: '99999999999w'"),
    ],
)
async def test_spec_the_database_or_the_engine_would_choke_on_is_invalid(
    cluster: Any, start_operator: Any, name: str, spec: dict[str, Any], field: str
) -> None:
    await start_operator()
    body = manifest(name, **spec)
    body["spec"] = {k: v for k, v in body["spec"].items() if v is not None}
    await create(cluster, body)
    condition = await eventually(lambda: ready(cluster, "team-a", name))
    assert condition["status"] == "False"
    assert condition["reason"] == "InvalidSpec"
    assert field in condition["message"]


def test_a_value_the_database_refuses_on_apply_is_invalid_not_retried(
    db: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*_: object, **__: object) -> None:
        raise RefusedByDatabaseError("value too long for type")

    monkeypatch.setattr(reconcile, "apply_schedule", refuse)
    outcome = reconcile.reconcile(db, manifest("refused"), policy=Policy(), now=datetime.now(UTC))
    assert (outcome.ready, outcome.reason) == (False, "InvalidSpec")
    assert outcome.message == "the database refused the spec: value too long for type"
