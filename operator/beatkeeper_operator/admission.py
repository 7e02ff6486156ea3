"""Apply-time validation: the validating admission webhook's decision on a Schedule.

The API server asks before it stores a created or changed Schedule; ``refusal`` answers
with exactly what the operator's reconcile would find later: ``validate_manifest`` (the
checks ``beatkeeper validate`` runs, with the same field paths and messages) and then the
tenancy policy. A refused Schedule is never stored, so ``kubectl apply`` fails at once with
the message instead of succeeding and turning ``InvalidSpec`` afterwards. Warnings (an
``endTime`` already past) go back as admission warnings, which kubectl prints.

Only a change of the spec is judged: an update that leaves the spec as it was (kopf's
finalizer and annotations, labels, a ``beatkeeper.io/trigger``) is always allowed, so a
Schedule stored while the webhook was down, or one a tightened policy now forbids, can
still be annotated, have its finalizer removed and be deleted.

Importing this module registers the handler on kopf's default registry; it decides, and
does no I/O.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import kopf

from beatkeeper.observability import metrics
from beatkeeper.policy import Policy
from beatkeeper.problems import SpecError
from beatkeeper.spec import GROUP, PLURAL, VERSION
from beatkeeper_operator import reconcile

__all__ = ["HANDLER_ID", "Refusal", "refusal", "validate_schedule"]

#: The webhook's URL path is ``/<HANDLER_ID>``; the chart's webhook configuration names it.
HANDLER_ID = "validate-schedule"
#: HTTP status of a refusal: 422 for a spec that cannot work, 403 for one the policy forbids.
INVALID, FORBIDDEN = 422, 403


@dataclass(frozen=True)
class Refusal:
    """Why a Schedule may not be stored: the Ready reason it would get, and the message."""

    reason: str  # InvalidSpec or TaskNotAllowed
    message: str
    code: int


def refusal(
    body: Mapping[str, Any],
    *,
    old: Mapping[str, Any] | None,
    policy: Policy,
    now: datetime,
    warnings: list[str] | None = None,
) -> Refusal | None:
    """Why the API server must refuse ``body`` (``old``: the stored object on update)."""
    if old is not None and old.get("spec") == body.get("spec"):
        return None
    try:
        validated = reconcile.validate_resource(body, now=now)
    except SpecError as exc:
        return Refusal("InvalidSpec", str(exc), INVALID)
    if warnings is not None:
        warnings.extend(str(warning) for warning in validated.warnings)
    meta, spec = validated.manifest.metadata, validated.manifest.spec
    forbidden = policy.refusal(namespace=meta.namespace, task=spec.task, queue=spec.queue)
    if forbidden is not None:
        return Refusal("TaskNotAllowed", forbidden, FORBIDDEN)
    return None


@kopf.on.validate(GROUP, VERSION, PLURAL, id=HANDLER_ID, operations=["CREATE", "UPDATE"])
async def validate_schedule(
    *,
    body: kopf.Body,
    old: kopf.Body | None = None,
    memo: kopf.Memo,
    warnings: list[str],
    **_: Any,
) -> None:
    """Refuse an invalid or forbidden Schedule (``kopf.AdmissionError``), count every answer."""
    began = time.perf_counter()
    policy: Policy = memo["runtime"].config.policy
    # In a thread, as the reconcile runs: a long RRULE's checks must not stall kopf's loop.
    found = await asyncio.to_thread(
        refusal, body, old=old, policy=policy, now=datetime.now(UTC), warnings=warnings
    )
    decision = "allowed" if found is None else "denied"
    metrics.ADMISSION_SECONDS.labels(decision=decision).observe(time.perf_counter() - began)
    metrics.ADMISSION_DECISIONS.labels(
        decision=decision, reason="" if found is None else found.reason
    ).inc()
    if found is not None:
        raise kopf.AdmissionError(found.message, code=found.code)
