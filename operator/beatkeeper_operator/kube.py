"""The only module that calls the Kubernetes API itself rather than through kopf's handlers.

The status refresher runs outside any handler, so it cannot return a patch for kopf to
apply; it uses kopf's own API client instead (the same credentials, retries and
connection pool as the handlers). Events go through here too, behind ``EventLimiter``:
every Event a Schedule gets is rate-limited per schedule and reason, and its message is cut
to the API's 1,024 characters.

kopf's client lives in private modules; keeping every such import here means a kopf
upgrade touches one file. This module must not decide what to write, only write it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import aiohttp
import kopf
from kopf._cogs.clients import api, errors
from kopf._cogs.clients import events as kopf_events
from kopf._cogs.structs import references

from beatkeeper.spec import API_VERSION, GROUP, KIND, PLURAL, VERSION

__all__ = [
    "CALL_FAILED",
    "MAX_EVENT_MESSAGE",
    "SCHEDULES",
    "EventLimiter",
    "list_schedule_uids",
    "patch_status",
    "post_event",
    "set_ca_bundle",
]

MAX_EVENT_MESSAGE = 1024
#: Schedules per page when listing them all.
LIST_PAGE = 500
SCHEDULES = references.Resource(
    group=GROUP,
    version=VERSION,
    plural=PLURAL,
    kind=KIND,
    namespaced=True,
    subresources=frozenset({"status"}),
)
_EVENTS = references.Resource(group="", version="v1", plural="events", namespaced=True)
_WEBHOOK_CONFIGURATIONS = references.Resource(
    group="admissionregistration.k8s.io",
    version="v1",
    plural="validatingwebhookconfigurations",
    namespaced=False,
)
logger = logging.getLogger(__name__)


class EventLimiter:
    """At most one Event per schedule and reason every ``interval`` seconds."""

    def __init__(self, *, interval: float = 60.0, capacity: int = 100_000) -> None:
        self.interval = interval
        self.capacity = capacity
        self._last: dict[tuple[str, str], float] = {}

    def allow(self, uid: str, reason: str) -> bool:
        now = time.monotonic()
        key = (uid, reason)
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            return False
        if len(self._last) >= self.capacity:
            self._last = {k: v for k, v in self._last.items() if now - v < self.interval}
        self._last[key] = now
        return True


async def patch_status(
    settings: kopf.OperatorSettings, *, namespace: str, name: str, status: Mapping[str, Any]
) -> bool:
    """Merge-patch a Schedule's status subresource; False if the Schedule is gone."""
    try:
        await api.patch(
            url=SCHEDULES.get_url(
                namespace=references.NamespaceName(namespace), name=name, subresource="status"
            ),
            headers={"Content-Type": "application/merge-patch+json"},
            payload={"status": dict(status)},
            settings=settings,
            logger=logger,
        )
    except errors.APINotFoundError:
        return False
    return True


#: What a call here raises when the API server refuses it or cannot be reached.
CALL_FAILED = (errors.APIError, aiohttp.ClientError, OSError, TimeoutError)


async def set_ca_bundle(settings: kopf.OperatorSettings, *, name: str, ca_bundle: str) -> bool:
    """Set the caBundle of every webhook in one ValidatingWebhookConfiguration; False if gone.

    Raises one of ``CALL_FAILED`` when the API server refuses (RBAC) or is away.
    """
    url = _WEBHOOK_CONFIGURATIONS.get_url(name=name)
    try:
        current = await api.get(url=url, settings=settings, logger=logger)
        # A JSON patch: a merge patch would replace the whole webhooks list.
        operations = [
            {"op": "add", "path": f"/webhooks/{index}/clientConfig/caBundle", "value": ca_bundle}
            for index, _ in enumerate(current.get("webhooks") or [])
        ]
        if operations:
            await api.patch(
                url=url,
                headers={"Content-Type": "application/json-patch+json"},
                payload=operations,
                settings=settings,
                logger=logger,
            )
    except errors.APINotFoundError:
        return False
    return True


async def list_schedule_uids(
    settings: kopf.OperatorSettings, *, namespace: str | None
) -> set[str] | None:
    """The uid of every Schedule in ``namespace`` (None: all), or None if a page failed.

    Paged (``LIST_PAGE`` at a time), so a cluster with many Schedules is never one response.
    """
    uids: set[str] = set()
    token = ""
    where = None if namespace is None else references.NamespaceName(namespace)
    while True:
        params = {"limit": str(LIST_PAGE), **({"continue": token} if token else {})}
        try:
            listed = await api.get(
                url=SCHEDULES.get_url(namespace=where, params=params),
                settings=settings,
                logger=logger,
            )
        except errors.APIError as exc:
            logger.warning("listing Schedules in %s failed: %s", namespace or "all namespaces", exc)
            return None
        uids.update(str(item["metadata"]["uid"]) for item in listed.get("items", []))
        token = (listed.get("metadata") or {}).get("continue") or ""
        if not token:
            return uids


async def post_event(
    settings: kopf.OperatorSettings,
    limiter: EventLimiter,
    *,
    schedule: Mapping[str, Any],
    type: str,
    reason: str,
    message: str,
) -> None:
    """Post an Event on the Schedule unless one with this reason was posted just now."""
    uid = str(schedule.get("uid", ""))
    if not limiter.allow(uid, reason):
        return
    if len(message) > MAX_EVENT_MESSAGE:
        message = message[: MAX_EVENT_MESSAGE - 3] + "..."
    ref = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": schedule["name"],
        "namespace": schedule["namespace"],
        "uid": uid,
    }
    await kopf_events.post_event(
        ref=ref,  # type: ignore[arg-type]
        type=type,
        reason=reason,
        message=message,
        resource=_EVENTS,
        settings=settings,
        logger=logger,
    )
