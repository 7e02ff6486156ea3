"""A Kubernetes API emulator that behaves enough like a real API server for kopf.

kmock's ``KubernetesEmulator`` stores objects but does not assign ``metadata.uid``,
``resourceVersion`` or ``generation``, and merges every PATCH body naively. kopf needs more:
its finalizer patches are JSON patches guarded by a ``test`` on ``resourceVersion``, and
``observedGeneration`` only means something when ``generation`` moves with the spec. This
subclass adds exactly that, and the status subresource's split (a status PATCH changes only
``status``, a main PATCH never does). It counts requests per kind (and records watch paths)
for the tests and the benchmark instead of keeping kmock's log of every request, finds
objects by their address, and serves its own object requests without kmock's search for a
reaction: that keeps the cost of a request small and flat at thousands of Schedules.

It is as strict as a real API server where the operator's correctness depends on it
(``crd_rules``): Schedules are pruned and validated against the generated CRD's schema and
CEL rules, spec and status alike; annotations over 256 KiB, objects over 1.5 MiB and bad
names are refused, with the ``Status`` body a real server sends (422, 413, 409); a request
body over 1 MiB is refused by the HTTP server underneath (a real one takes 3 MiB).
``metadata.generateName`` gets a random suffix. Every change gets the next
``resourceVersion``; a list reports the current one and supports ``limit``/``continue``, and
a watch from ``resourceVersion=N`` replays what changed after N (410 Gone once N is older
than the events kept), so a client that lists and then watches misses nothing.

``make_emulator`` serves discovery for everything kopf waits for. Test- and
benchmark-side only: nothing in the product imports it.
"""

from __future__ import annotations

import base64
import collections
import contextvars
import copy
import datetime
import itertools
import json
import random
import uuid
from collections import Counter
from typing import Any

import aiohttp.web
import attrs
import crd_rules
import kmock

GROUP_VERSION = "beatkeeper.io/v1alpha1"
SCHEDULES = f"{GROUP_VERSION}/schedules"
#: How many past watch events a watch can resume from (a real server keeps ~5 minutes).
EVENTS_KEPT = 200_000
_NAME_SUFFIX = "bcdfghjklmnpqrstvwxz2456789"  # what apimachinery's generateName draws from


_serving: contextvars.ContextVar[Any] = contextvars.ContextVar("serving", default=None)


class _RequestLog(list[Any]):
    """kmock's request log, kept as a count: nothing here asserts on past requests.

    kmock numbers requests by the log's length and picks a reaction by checking ``request
    in reaction's view of all requests``, which filters the whole log on every request:
    quadratic, minutes for a few thousand Schedules, and memory for every body ever sent.
    This log stores nothing; while a request is served (its own task, so its own context)
    iterating it yields just that request. Tests count requests with ``Emulator.counts``.
    """

    def __init__(self) -> None:
        super().__init__()
        self._length = 0

    def append(self, request: Any) -> None:
        self._length += 1

    def __len__(self) -> int:
        return self._length

    def __iter__(self) -> Any:
        serving = _serving.get()
        return iter(() if serving is None else (serving,))


#: The emulator's fallback for each request that changes or reads one object.
_SERVED_DIRECTLY = {
    kmock.action.CREATE: "_serve_create",
    kmock.action.FETCH: "_serve_fetch",
    kmock.action.UPDATE: "_serve_update",
    kmock.action.DELETE: "_serve_delete",
}


class _OwnReactions(kmock.RawHandler):  # type: ignore[misc]
    """Serve the emulator's own object requests without kmock's search for a reaction.

    kmock chooses the reaction to a request by running the request through the filter chain
    of every registered reaction, most of the emulator's CPU at thousands of Schedules. While
    no test has registered a reaction of its own, a create, fetch, patch or delete can only
    meet the emulator's fallback for it, so it is served directly. ``Emulator`` lists this
    class after ``kmock.KubernetesEmulator``, which hands every request here once it has
    updated its objects; anything else goes on to kmock's search.
    """

    _own_reactions = 0  # how many reactions the emulator itself registered

    async def _handle(self, request: Any) -> aiohttp.web.StreamResponse:
        serve = _SERVED_DIRECTLY.get(request.action) if request.resource is not None else None
        if serve is None or len(self._payloads) > self._own_reactions:
            return await super()._handle(request)
        return aiohttp.web.json_response(await getattr(self, serve)(request))


@attrs.define(kw_only=True)
class Emulator(kmock.KubernetesEmulator, _OwnReactions):  # type: ignore[misc]
    #: Requests served, by ``ACTION:subresource`` (``UPDATE:status``, ``WATCH:`` ...).
    counts: Counter[str] = attrs.field(factory=Counter, init=False)
    #: The path of every watch request, in order.
    watches: list[str] = attrs.field(factory=list, init=False)
    #: Refused writes, by resource plural and HTTP code (``schedules:422``).
    refusals: Counter[str] = attrs.field(factory=Counter, init=False)
    #: Requests refused with 403 Forbidden, as RBAC would, by ``action:plural``
    #: (``update:schedules`` for a PATCH): a test adds what the caller may not do.
    denied: set[str] = attrs.field(factory=set, init=False)
    _versions: itertools.count[int] = attrs.field(factory=lambda: itertools.count(1), init=False)
    _version: int = attrs.field(default=0, init=False)  # the last resourceVersion given out
    _history: dict[Any, collections.deque[tuple[int, Any]]] = attrs.field(
        factory=lambda: collections.defaultdict(lambda: collections.deque(maxlen=EVENTS_KEPT)),
        init=False,
    )

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self._requests = _RequestLog()
        self._own_reactions = len(self._payloads)
        self._buses = _RecordedBuses(self)

    def _next_version(self) -> int:
        self._version = next(self._versions)
        return self._version

    def _record(self, resource: Any, event: dict[str, Any]) -> dict[str, Any]:
        """Log a watch event under its resourceVersion (a deletion gets a new one)."""
        if event.get("type") == "DELETED":
            event = {**event, "object": copy.deepcopy(event["object"])}
            event["object"].setdefault("metadata", {})["resourceVersion"] = str(
                self._next_version()
            )
        version = int(event["object"].get("metadata", {}).get("resourceVersion") or 0)
        self._history[resource].append((version, event))
        return event

    async def _handle(self, request: Any) -> aiohttp.web.StreamResponse:
        action = str(request.action.value) if request.action is not None else "other"
        self.counts[f"{action}:{request.subresource or ''}"] += 1
        if request.action == kmock.action.WATCH:
            self.watches.append(str(request.url.path))
        plural = getattr(request.resource, "plural", "")
        if f"{action.lower()}:{plural}" in self.denied:
            message = f'{plural} "{request.name or ""}" is forbidden: the caller may not {action}'
            return _refused(403, "Forbidden", request, message)
        token = _serving.set(request)
        try:
            return await self._emulate(request)
        finally:
            _serving.reset(token)

    async def _emulate(self, request: Any) -> aiohttp.web.StreamResponse:
        if request.resource is None:
            return await super()._handle(request)
        if request.action == kmock.action.CREATE and isinstance(request.data, dict):
            body = self._admitted(request, request.data)
            if isinstance(body, aiohttp.web.StreamResponse):
                return body
            self._stamp_new(body)
            # Request is a frozen attrs class; a new instance would not match kmock's
            # fallback reactions, so the parsed body is replaced in place.
            object.__setattr__(request, "data", body)
        elif request.action == kmock.action.UPDATE and request.name is not None:
            key = (request.resource, request.namespace, request.name)
            if key in self.objects and not self.objects[key].deleted:
                current = copy.deepcopy(self.objects[key].raw)
                changed = _apply(current, request.data, subresource=request.subresource)
                if changed is None:
                    message = "the server rejected our request due to an error in our request"
                    return _refused(422, "Invalid", request, message)
                changed = self._admitted(request, changed)
                if isinstance(changed, aiohttp.web.StreamResponse):
                    return changed
                self._stamp_update(current, changed)
                object.__setattr__(request, "data", _merge_diff(current, changed))
        elif request.action == kmock.action.DELETE and request.name is not None:
            stored = self._stored(request.resource, request.namespace, request.name)
            meta = {} if stored is None or stored.deleted else stored.raw.get("metadata", {})
            if meta.get("finalizers") and not meta.get("deletionTimestamp"):
                # kmock marks it deleted (a MODIFIED event): that change needs a version too.
                stored.patch({"metadata": {"resourceVersion": str(self._next_version())}})
        return await super()._handle(request)

    async def _render_error(self, exc: Exception) -> aiohttp.web.StreamResponse:
        """kmock's object errors with the reason a real server gives (kopf reads it)."""
        reasons = {404: "NotFound", 409: "AlreadyExists"}
        code = getattr(exc, "status", None)
        if isinstance(exc, kmock.KubernetesError) and code in reasons:
            request = _serving.get()
            message = "the object already exists" if code == 409 else "the object is not found"
            response: aiohttp.web.StreamResponse = _refused(code, reasons[code], request, message)
            return response
        return await super()._render_error(exc)

    def _admitted(
        self, request: Any, body: dict[str, Any]
    ) -> dict[str, Any] | aiohttp.web.StreamResponse:
        """The body as a real server would store it, or the response refusing it."""
        plural = str(getattr(request.resource, "plural", ""))
        meta = body.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            suffix = "".join(random.choices(_NAME_SUFFIX, k=5))
            meta["name"] = f"{meta['generateName']}{suffix}"
        schedule = plural == "schedules"
        if schedule:
            body = crd_rules.prune_schedule(body)
        causes = crd_rules.problems(body, schedule=schedule)
        if causes:
            self.refusals[f"{plural}:422"] += 1
            kind = "Schedule.beatkeeper.io" if schedule else str(body.get("kind") or plural)
            status = crd_rules.status_body(
                code=422, reason="Invalid", kind=kind, name=meta.get("name", ""), causes=causes
            )
            return aiohttp.web.json_response(status, status=422)
        if crd_rules.too_large(body):
            self.refusals[f"{plural}:413"] += 1
            message = "etcdserver: request is too large"
            return _refused(413, "RequestEntityTooLarge", request, message)
        return body

    async def _serve_list(self, request: Any) -> Any:
        """Objects in name order, ``limit`` at a time, with the list's resourceVersion."""
        async with self._lock:
            version = self._version
            found = sorted(
                ((namespace or "", name), obj.raw)
                for (resource, namespace, name), obj in self.objects.items()
                if resource == request.resource
                and request.namespace in (None, namespace)
                and not obj.deleted
            )
        after = _continued(request.params.get("continue"))
        if after is not None:
            found = [(key, raw) for key, raw in found if key > after]
        limit = int(request.params.get("limit") or 0)
        token = ""
        if limit and len(found) > limit:
            found = found[:limit]
            token = base64.urlsafe_b64encode(json.dumps(found[-1][0]).encode()).decode()
        metadata = {"resourceVersion": str(version), "continue": token}
        return {"metadata": metadata, "items": [raw for _, raw in found]}

    async def _serve_watch(self, request: Any) -> Any:
        # The snapshot (or the replay) and the bus's mark are taken under the lock every
        # change is made under, so no change falls between them.
        yield b""
        bus = self._buses[request.resource]
        since = _version_of(request.params.get("resourceVersion"))
        async with self._lock:
            marker = await bus.mark()
            if since is None:  # no version: the current state first, as ADDED events
                snapshot = [
                    {"type": "ADDED", "object": obj.raw}
                    for (resource, namespace, _), obj in self.objects.items()
                    if resource == request.resource
                    and request.namespace in (None, namespace)
                    and not obj.deleted
                ]
            else:
                snapshot = self._replay(request.resource, since)
        try:
            for event in snapshot:
                namespace = event.get("object", {}).get("metadata", {}).get("namespace")
                if request.namespace in (None, namespace) or event["type"] == "ERROR":
                    yield event
            async for event in bus.stream(since=marker):
                namespace = event.get("object", {}).get("metadata", {}).get("namespace")
                if request.namespace in (None, namespace):
                    yield event
        finally:
            await bus.unmark(marker)

    def _replay(self, resource: Any, since: int) -> list[dict[str, Any]]:
        """The events after ``since``, or a 410 Gone if some of them are no longer kept."""
        kept = self._history[resource]
        if kept and len(kept) == kept.maxlen and kept[0][0] > since + 1:
            gone = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 410}
            return [{"type": "ERROR", "object": {**gone, "reason": "Expired"}}]
        return [event for version, event in kept if version > since]

    # kmock finds the object of a request by scanning every object it holds: another
    # quadratic cost at thousands of Schedules. Its key is the object's address, so look it up.
    async def _serve_fetch(self, request: Any) -> Any:
        obj = self._stored(request.resource, request.namespace, request.name)
        if obj is None or obj.deleted:
            raise kmock.KubernetesObjectNotFoundError()
        return obj.raw

    async def _serve_create(self, request: Any) -> Any:
        meta = request.data.get("metadata", {})
        namespace = request.namespace or meta.get("namespace")
        return self._require(request.resource, namespace, request.name or meta.get("name")).raw

    async def _serve_update(self, request: Any) -> Any:
        # The last state even if the patch just released a deleted object (as kmock does).
        return self._require(request.resource, request.namespace, request.name).last.raw

    async def _serve_delete(self, request: Any) -> Any:
        return self._require(request.resource, request.namespace, request.name).last.raw

    def _stored(self, resource: Any, namespace: str | None, name: str | None) -> Any:
        try:  # kmock's ObjectsArray is no Mapping: it has no get()
            return self.objects[resource, namespace, name]
        except KeyError:
            return None

    def _require(self, resource: Any, namespace: str | None, name: str | None) -> Any:
        obj = self._stored(resource, namespace, name)
        if obj is None:  # kmock's own handling stored it before serving: a bug if not
            raise RuntimeError(f"no object at {resource}/{namespace}/{name}")
        return obj

    def _stamp_new(self, body: dict[str, Any]) -> None:
        meta = body.setdefault("metadata", {})
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("generation", 1)
        meta["resourceVersion"] = str(self._next_version())
        meta.setdefault("creationTimestamp", _now())

    def _stamp_update(self, old: dict[str, Any], new: dict[str, Any]) -> None:
        if old == new:
            return
        meta = new.setdefault("metadata", {})
        meta["resourceVersion"] = str(self._next_version())
        if _content(old) != _content(new):
            meta["generation"] = int(old.get("metadata", {}).get("generation", 1)) + 1


def make_emulator() -> Emulator:
    emulator = Emulator()
    verbs = ["get", "list", "watch", "create", "patch", "delete"]
    emulator.resources[SCHEDULES] = kmock.ResourceInfo(
        kind="Schedule", namespaced=True, singular="schedule", verbs=verbs, subresources=["status"]
    )
    emulator.resources["apiextensions.k8s.io/v1/customresourcedefinitions"] = kmock.ResourceInfo(
        kind="CustomResourceDefinition",
        namespaced=False,
        singular="customresourcedefinition",
        verbs=verbs,
    )
    emulator.resources["v1/namespaces"] = kmock.ResourceInfo(
        kind="Namespace", namespaced=False, singular="namespace", verbs=verbs
    )
    emulator.resources["v1/events"] = kmock.ResourceInfo(
        kind="Event", namespaced=True, singular="event", verbs=verbs
    )
    return emulator


class _RecordedBus(kmock.Bus):  # type: ignore[misc]
    """kmock's event bus for one resource, also logging each event for resumed watches."""

    def __init__(self, emulator: Emulator, resource: Any) -> None:
        super().__init__()
        self._emulator = emulator
        self._resource = resource

    async def put(self, *items: Any) -> None:
        await super().put(*(self._emulator._record(self._resource, item) for item in items))


class _RecordedBuses(dict[Any, _RecordedBus]):
    def __init__(self, emulator: Emulator) -> None:
        super().__init__()
        self._emulator = emulator

    def __missing__(self, resource: Any) -> _RecordedBus:
        bus = self[resource] = _RecordedBus(self._emulator, resource)
        return bus


def _refused(code: int, reason: str, request: Any, message: str) -> aiohttp.web.Response:
    status = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "details": {"name": getattr(request, "name", None) or ""},
        "code": code,
    }
    return aiohttp.web.json_response(status, status=code)


def _version_of(text: str | None) -> int | None:
    """A watch's starting resourceVersion; None (or "0": any) starts from the current state."""
    try:
        version = int(text or "")
    except ValueError:
        return None
    return version or None


def _continued(token: str | None) -> tuple[str, str] | None:
    if not token:
        return None
    namespace, name = json.loads(base64.urlsafe_b64decode(token.encode()))
    return namespace, name


def _now() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _content(body: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in body.items() if key not in {"metadata", "status"}}


def _apply(
    current: dict[str, Any], patch: Any, *, subresource: str | None
) -> dict[str, Any] | None:
    """The object after the patch, or None when a JSON-patch ``test`` fails (HTTP 422)."""
    result = copy.deepcopy(current)
    if isinstance(patch, list):
        for op in patch:
            if not _json_patch_op(result, op):
                return None
    elif isinstance(patch, dict):
        result = _merge(result, patch)
    if subresource == "status":
        kept = copy.deepcopy(current)
        kept["status"] = result.get("status", {})
        return kept
    result["status"] = copy.deepcopy(current.get("status", {}))
    if not result["status"]:
        result.pop("status")
    return result


def _merge(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: dicts merge, null removes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    merged = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = _merge(merged.get(key), value)
    return merged


def _json_patch_op(body: dict[str, Any], op: dict[str, Any]) -> bool:
    parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
    parent: Any = body
    for part in parts[:-1]:
        parent = parent[int(part)] if isinstance(parent, list) else parent.setdefault(part, {})
    last = parts[-1]
    kind = op["op"]
    if kind == "test":
        return bool(parent.get(last) == op["value"])
    if isinstance(parent, list):
        index = len(parent) if last == "-" else int(last)
        if kind == "add":
            parent.insert(index, op["value"])
        elif kind == "remove":
            parent.pop(index)
        elif kind == "replace":
            parent[index] = op["value"]
    elif kind in {"add", "replace"}:
        parent[last] = op["value"]
    elif kind == "remove":
        parent.pop(last, None)
    return True


def _merge_diff(old: Any, new: Any) -> Any:
    """A merge patch that turns ``old`` into ``new`` under kmock's naive merge."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return new
    diff: dict[str, Any] = {key: None for key in old if key not in new}
    for key, value in new.items():
        if key not in old or old[key] != value:
            diff[key] = _merge_diff(old.get(key), value)
    return diff
