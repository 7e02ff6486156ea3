"""Helpers for operator tests: talk to the emulator like kubectl, poll with a deadline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from emulator import SCHEDULES, Emulator


async def eventually(check: Callable[[], Any], *, timeout: float = 15.0, what: str = "") -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (KeyError, LookupError, AssertionError) as exc:
            last = exc
        else:
            if last:
                return last
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what or check}: last saw {last!r}")


def schedule_url(namespace: str, name: str = "") -> str:
    base = f"/apis/beatkeeper.io/v1alpha1/namespaces/{namespace}/schedules"
    return f"{base}/{name}" if name else base


def manifest(name: str, namespace: str = "team-a", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "beatkeeper.io/v1alpha1",
        "kind": "Schedule",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"task": "billing.tasks.charge", "cron": "*/5 * * * *", **spec},
    }


async def create(cluster: Emulator, body: dict[str, Any]) -> dict[str, Any]:
    meta = body["metadata"]
    async with cluster.post(schedule_url(meta["namespace"]), json=body) as response:
        assert response.status < 300, await response.text()
        result: dict[str, Any] = await response.json()
        return result


async def merge_patch(cluster: Emulator, namespace: str, name: str, patch: dict[str, Any]) -> None:
    headers = {"Content-Type": "application/merge-patch+json"}
    async with cluster.patch(
        schedule_url(namespace, name), json=patch, headers=headers
    ) as response:
        assert response.status < 300, await response.text()


async def delete(cluster: Emulator, namespace: str, name: str) -> None:
    async with cluster.delete(schedule_url(namespace, name)) as response:
        assert response.status < 300, await response.text()


def current(cluster: Emulator, namespace: str, name: str) -> dict[str, Any]:
    obj = cluster.objects[SCHEDULES, namespace, name]
    if obj.deleted:
        raise KeyError(name)
    return dict(obj.raw)


def ready(cluster: Emulator, namespace: str, name: str) -> dict[str, Any]:
    for condition in current(cluster, namespace, name).get("status", {}).get("conditions", []):
        if condition["type"] == "Ready":
            return dict(condition)
    raise KeyError("Ready")


async def ready_becomes(
    cluster: Emulator, namespace: str, name: str, *, timeout: float = 15.0, **expected: str
) -> dict[str, Any]:
    """The Schedule's Ready condition, once its fields have ``expected`` values."""

    def matching() -> dict[str, Any] | None:
        condition = ready(cluster, namespace, name)
        return condition if all(condition.get(k) == v for k, v in expected.items()) else None

    found: dict[str, Any] = await eventually(
        matching, timeout=timeout, what=f"{namespace}/{name} Ready with {expected}"
    )
    return found


def events(cluster: Emulator, reason: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for (resource, _, _), obj in list(cluster.objects.items()):
        if resource == "v1/events" or getattr(resource, "plural", "") == "events":
            found.extend(
                version.raw
                for version in obj.history
                if version is not None and version.raw.get("reason") == reason
            )
    return found
