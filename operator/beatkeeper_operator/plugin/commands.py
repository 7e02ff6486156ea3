"""What each ``kubectl beatkeeper`` command does to a Schedule, and what it prints.

Every command but ``runs`` is one JSON merge patch: an annotation the operator acts on once
(``beatkeeper_operator.annotations``), or ``spec.suspend``. ``runs`` only reads the status.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from beatkeeper.spec.timing import to_instant
from beatkeeper.spec.types import parse_time
from beatkeeper_operator.annotations import (
    BACKFILL_ANNOTATION,
    CANCEL_ANNOTATION,
    MIN_RUN_PREFIX,
    REPLAY_ANNOTATION,
    RESUME_ANNOTATION,
    TRIGGER_ANNOTATION,
)
from beatkeeper_operator.plugin.cluster import Cluster

__all__ = ["COMMANDS", "UsageError", "new_token"]

MAX_BACKFILL = 1000  # beatkeeper.store.backfills.MAX_BACKFILL (a test pins them equal)


class UsageError(ValueError):
    """The command line asks for something that cannot be done; the message says why."""


def new_token() -> str:
    """A request token: when it was asked for, and enough randomness to be unique."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def _annotate(cluster: Cluster, namespace: str, name: str, key: str, value: str) -> None:
    cluster.patch(namespace, name, {"metadata": {"annotations": {key: value}}})


def trigger(cluster: Cluster, namespace: str, name: str, _options: Any) -> str:
    token = new_token()
    patched = cluster.patch(
        namespace, name, {"metadata": {"annotations": {TRIGGER_ANNOTATION: token}}}
    )
    uid = str((patched.get("metadata") or {}).get("uid") or "")
    try:
        run = f"run {trigger_run_id(uuid.UUID(uid), token)}"
    except ValueError:
        run = "a run"
    return f"schedule {namespace}/{name}: asked for {run} now (token {token})"


def trigger_run_id(schedule_uid: uuid.UUID, token: str) -> uuid.UUID:
    """The id of the run a trigger token plans: ``beatkeeper.store.requests.token_run_id``."""
    return uuid.uuid5(schedule_uid, f"trigger/{token}")


def backfill(cluster: Cluster, namespace: str, name: str, options: Any) -> str:
    schedule = cluster.get(namespace, name)
    zone_name = str((schedule.get("spec") or {}).get("timeZone") or "UTC")
    try:
        zone = ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise UsageError(f"spec.timeZone {zone_name!r} of {namespace}/{name} is unknown") from None
    start, end = _instant(options.start, zone, "--from"), _instant(options.end, zone, "--to")
    if end < start:
        raise UsageError(f"--to ({end.isoformat()}) is before --from ({start.isoformat()})")
    window = f"{start.isoformat()}/{end.isoformat()}"
    _annotate(cluster, namespace, name, BACKFILL_ANNOTATION, window)
    return (
        f"schedule {namespace}/{name}: asked to backfill {window} (a window of more than "
        f"{MAX_BACKFILL} occurrences is refused: see kubectl get events)"
    )


def _instant(text: str, zone: ZoneInfo, flag: str) -> datetime:
    """``text`` as an instant; a time without an offset is read in the schedule's zone."""
    try:
        return to_instant(parse_time(text), zone)
    except ValueError as exc:
        raise UsageError(f"{flag}: {exc}") from None


def suspend(cluster: Cluster, namespace: str, name: str, _options: Any) -> str:
    cluster.patch(namespace, name, {"spec": {"suspend": True}})
    return f"schedule {namespace}/{name}: suspended (no new runs are planned)"


def resume(cluster: Cluster, namespace: str, name: str, _options: Any) -> str:
    """``spec.suspend: false`` and a resume token, which also lifts a pause after failures."""
    before = cluster.get(namespace, name)
    token = new_token()
    body = {"spec": {"suspend": False}, "metadata": {"annotations": {RESUME_ANNOTATION: token}}}
    cluster.patch(namespace, name, body)
    ready = _ready(before)
    if ready.get("reason") == "PausedAfterFailures":
        why = ready.get("message") or "too many failures in a row"
        return f"schedule {namespace}/{name}: resumed; it was paused after failures: {why}"
    return f"schedule {namespace}/{name}: resumed"


def replay(cluster: Cluster, namespace: str, name: str, options: Any) -> str:
    run = _run_prefix(options.run)
    _annotate(cluster, namespace, name, REPLAY_ANNOTATION, f"{new_token()}/{run}")
    return (
        f"schedule {namespace}/{name}: asked to replay run {run} with the schedule's current "
        "spec (kubectl beatkeeper runs shows the new run)"
    )


def cancel(cluster: Cluster, namespace: str, name: str, options: Any) -> str:
    run = _run_prefix(options.run)
    state = next((r["state"] for r in _recent(cluster.get(namespace, name)) if _is(r, run)), None)
    _annotate(cluster, namespace, name, CANCEL_ANNOTATION, f"{new_token()}/{run}")
    if state == "running":
        return (
            f"schedule {namespace}/{name}: cancel requested; run {run} is running; it will be "
            "stopped (kubectl get events shows when)"
        )
    return f"schedule {namespace}/{name}: asked to cancel run {run}"


def _run_prefix(text: str) -> str:
    run = text.strip().lower()
    if len(run) < MIN_RUN_PREFIX or any(c not in "0123456789abcdef-" for c in run):
        raise UsageError(f"RUN must be a run id or its first {MIN_RUN_PREFIX}+ characters")
    return run


def _is(run: dict[str, Any], prefix: str) -> bool:
    return str(run.get("id", "")).startswith(prefix)


def _ready(schedule: dict[str, Any]) -> dict[str, Any]:
    conditions = (schedule.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c.get("type") == "Ready"), {})


def _recent(schedule: dict[str, Any]) -> list[dict[str, Any]]:
    return list((schedule.get("status") or {}).get("recentRuns") or [])


def runs_table(schedules: list[dict[str, Any]], *, with_namespace: bool) -> str:
    """The recent runs of ``schedules`` as a kubectl-style table, newest first each."""
    header = ["SCHEDULE", "RUN", "STATE", "ATTEMPT", "PLANNED", "FINISHED", "ERROR"]
    rows: list[list[str]] = []
    for schedule in schedules:
        meta = schedule.get("metadata") or {}
        for run in _recent(schedule):
            row = [str(meta.get("name", "")), str(run.get("id", ""))[:8], str(run.get("state"))]
            row += [str(run.get("attempt", 1)), str(run.get("plannedTime", ""))]
            row += [str(run.get("finishTime") or "-"), str(run.get("error") or "-")]
            rows.append(([str(meta.get("namespace", ""))] if with_namespace else []) + row)
    if not rows:
        return "No runs found."
    header = (["NAMESPACE"] if with_namespace else []) + header
    widths = [max(len(line[i]) for line in [header, *rows]) for i in range(len(header) - 1)]
    return "\n".join(
        "   ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=False))
        + "   "
        + line[-1]
        for line in [header, *rows]
    )


Command = Callable[[Cluster, str, str, Any], str]

COMMANDS: dict[str, tuple[Command, str]] = {
    "trigger": (trigger, "plan one run now"),
    "backfill": (backfill, "plan the occurrences in [--from, --to] that were never planned"),
    "suspend": (suspend, "stop planning new runs (spec.suspend: true)"),
    "resume": (resume, "plan runs again, also after a pause by pauseAfterFailures"),
    "replay": (replay, "run a dead or failed run again, with the schedule's current spec"),
    "cancel": (cancel, "cancel a run: one not started at once, a running one is stopped"),
}
