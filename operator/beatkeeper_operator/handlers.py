"""The kopf handlers: reconcile Schedules on create, update and resume; retire on delete.

Importing this module registers the handlers on kopf's default registry. Each handler
runs the synchronous store work in a thread (``reconcile``), writes status only through
``patch.status`` and only the fields that differ, and posts Events through
``kube.post_event``. A database that cannot be reached is a ``kopf.TemporaryError`` with
exponential backoff and a ``Ready=False reason=DatabaseUnavailable`` condition, never a
crash. Deletion waits on the ``beatkeeper.io/finalizer`` until the store has retired the
schedule. Every reconcile records the Schedule and the status it shows afterwards in
``Runtime.served``, which is all the status refresher knows of the resources. Reconciles
(validation included) run on their own small thread pool, not the event loop's default
one the refresher uses, so a burst of costly specs cannot hold up status refreshes. Each
outcome and each failed attempt is counted (``progress``); importing ``admission``
registers the validating webhook's handler.

This module must not hold SQL or status-building logic; it wires kopf to ``reconcile``,
``status`` and ``refresher``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import kopf

import beatkeeper_operator.admission  # noqa: F401 (registers the validating webhook's handler)
from beatkeeper.spec import DEFAULT_NAMESPACE, GROUP, PLURAL, VERSION
from beatkeeper.store import DatabaseUnavailable
from beatkeeper_operator import health, kube, reconcile, refresher, webhook
from beatkeeper_operator.runtime import (
    OperatorConfig,
    Runtime,
    Served,
    config_from_env,
    configure_kopf,
)
from beatkeeper_operator.status import (
    TRIGGER_LENGTH,
    already_reported,
    clip,
    previous_ready,
    ready_condition,
    run_fields,
    status_patch,
)

RESOURCE = (GROUP, VERSION, PLURAL)
logger = logging.getLogger(__name__)


@kopf.on.startup()
async def start(*, settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    config = memo.get("config")
    if not isinstance(config, OperatorConfig):
        config = config_from_env()
    configure_kopf(settings, namespaced=bool(config.settings.namespaces))
    issued = webhook.configure(settings, config.webhook)
    runtime = Runtime.build(config, settings)
    runtime.progress.publish()
    memo["runtime"] = runtime
    memo["tasks"] = [asyncio.create_task(refresher.run(runtime))]
    if config.webhook is not None and issued is not None:
        keeper = webhook.keep_certificates(settings, config.webhook, issued)
        memo["tasks"].append(asyncio.create_task(keeper))
    if config.health_port is not None:
        memo["tasks"].append(asyncio.create_task(health.serve(runtime, port=config.health_port)))
    runtime.started = True


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    for task in memo.get("tasks", []):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    runtime = memo.get("runtime")
    if isinstance(runtime, Runtime):
        runtime.executor.shutdown(wait=False, cancel_futures=True)
        runtime.reconciler.shutdown(wait=False, cancel_futures=True)
        runtime.engine.dispose()


@kopf.on.resume(*RESOURCE)
@kopf.on.create(*RESOURCE)
@kopf.on.update(*RESOURCE)
async def reconcile_schedule(
    *,
    body: kopf.Body,
    meta: kopf.Meta,
    patch: kopf.Patch,
    memo: kopf.Memo,
    retry: int,
    started: datetime,
    **_: Any,
) -> None:
    runtime: Runtime = memo["runtime"]
    runtime.progress.began(meta.uid, started=started)
    try:
        outcome = await _reconcile(body, meta, patch, runtime, retry)
    except kopf.TemporaryError:
        runtime.progress.failed(meta.uid, started=started, error="DatabaseUnavailable")
        raise
    except Exception as exc:
        runtime.progress.failed(meta.uid, started=started, error=type(exc).__name__)
        raise
    runtime.progress.reconciled(meta.uid, outcome=outcome)


async def _reconcile(
    body: kopf.Body, meta: kopf.Meta, patch: kopf.Patch, runtime: Runtime, retry: int
) -> str:
    """Reconcile one Schedule and write its status; returns the Ready reason."""
    now = datetime.now(UTC)
    current: Mapping[str, Any] = body.get("status") or {}
    generation = meta.get("generation")
    snapshot = {key: body.get(key) for key in ("apiVersion", "kind", "metadata", "spec", "status")}
    try:
        outcome = await runtime.in_database(
            reconcile.reconcile,
            runtime.engine,
            snapshot,
            executor=runtime.reconciler,
            policy=runtime.config.policy,
            now=now,
        )
    except DatabaseUnavailable as exc:
        runtime.database_ok = False
        message = str(exc)
        ready = ready_condition(
            status=False,
            reason="DatabaseUnavailable",
            message=message,
            generation=generation,
            previous=previous_ready(current),
            now=now,
        )
        _write(runtime, meta, patch, current, {"conditions": [ready]})
        delay = min(runtime.config.max_backoff, 2.0 ** min(retry, 10))
        raise kopf.TemporaryError(f"database unavailable: {message}", delay=delay) from None
    runtime.database_ok = True
    ready = ready_condition(
        status=outcome.ready,
        reason=outcome.reason,
        message=outcome.message,
        generation=generation,
        previous=previous_ready(current),
        now=now,
    )
    notices = outcome.notices
    if already_reported(previous_ready(current), ready):  # e.g. on resume after a restart
        notices = [notice for notice in notices if notice.reason != outcome.reason]
    desired: dict[str, Any] = {"conditions": [ready], "observedGeneration": generation}
    if outcome.observation is not None:
        desired["trigger"] = clip(outcome.observation.trigger, TRIGGER_LENGTH)
        desired.update(run_fields(outcome.observation))
        desired["lastResume"] = outcome.resumed
        # The refresher need not re-read this row version: the status below already has it.
        runtime.loaded_versions[outcome.observation.id] = outcome.observation.updated_at
    elif outcome.reason == "TaskNotAllowed":
        # Retired: nothing more is planned; runs already started go on, and the refresher
        # keeps ``active`` showing them until they finish.
        desired["nextRunTimes"] = []
    _write(runtime, meta, patch, current, desired)
    for notice in notices:
        await kube.post_event(
            runtime.kopf_settings,
            runtime.limiter,
            schedule={"uid": meta.uid, "namespace": meta.namespace, "name": meta.name},
            type=notice.type,
            reason=notice.reason,
            message=notice.message,
        )
    return outcome.reason


@kopf.on.delete(*RESOURCE)
async def retire_schedule(meta: kopf.Meta, memo: kopf.Memo, retry: int, **_: Any) -> None:
    runtime: Runtime = memo["runtime"]
    try:
        await runtime.in_database(
            reconcile.forget,
            runtime.engine,
            uid=meta.uid,
            namespace=meta.namespace or DEFAULT_NAMESPACE,
            name=meta.name or "",
            now=datetime.now(UTC),
        )
    except DatabaseUnavailable as exc:
        runtime.database_ok = False
        runtime.progress.failed(meta.uid, started=None, error="DatabaseUnavailable")
        delay = min(runtime.config.max_backoff, 2.0 ** min(retry, 10))
        raise kopf.TemporaryError(f"database unavailable: {exc}", delay=delay) from None
    runtime.progress.forgotten(meta.uid)
    if (key := _uuid(meta.uid)) is not None:
        runtime.served.pop(key, None)


def _write(
    runtime: Runtime,
    meta: kopf.Meta,
    patch: kopf.Patch,
    current: Mapping[str, Any],
    desired: Mapping[str, Any],
) -> None:
    """Patch the status fields that differ; remember what the status shows afterwards."""
    for key, value in status_patch(current, desired).items():
        patch.status[key] = value
    if (uid := _uuid(meta.uid)) is not None:
        runtime.served[uid] = Served(
            namespace=meta.namespace or DEFAULT_NAMESPACE,
            name=meta.name or "",
            generation=meta.get("generation"),
            status={**current, **desired},
        )


def _uuid(uid: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(uid or "")
    except ValueError:
        return None
