"""The emulator refuses, prunes and replays as a real API server does for the Schedule CRD."""

from __future__ import annotations

import json
from typing import Any

import emulator as emulator_module
import kmock
from emulator import Emulator
from harness import create, manifest, schedule_url

STATUS_JSON = {"Content-Type": "application/merge-patch+json"}


async def post(cluster: Emulator, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    async with cluster.post(schedule_url(body["metadata"]["namespace"]), json=body) as response:
        return response.status, await response.json()


async def patch_status(
    cluster: Emulator, name: str, status: dict[str, Any]
) -> tuple[int, dict[str, Any]]:
    url = schedule_url("team-a", name) + "/status"
    async with cluster.patch(url, json={"status": status}, headers=STATUS_JSON) as response:
        return response.status, await response.json()


async def test_a_spec_over_a_schema_limit_is_refused_with_a_status_body(cluster):
    code, body = await post(cluster, manifest("long", task="x" * 256))
    assert code == 422
    assert body["kind"] == "Status"
    assert body["reason"] == "Invalid"
    assert body["details"]["causes"] == [
        {
            "field": "spec.task",
            "reason": "FieldValueTooLong",
            "message": "Too long: may not be more than 255 bytes",
        }
    ]
    assert 'Schedule.beatkeeper.io "long" is invalid: spec.task: Too long' in body["message"]


async def test_enums_types_patterns_and_required_fields_are_enforced(cluster):
    cases = {
        "missedRuns": ("Sometimes", "FieldValueNotSupported"),
        "priority": ("high", "FieldValueTypeInvalid"),
        "jitter": ("soon", "FieldValueInvalid"),
    }
    for field, (value, reason) in cases.items():
        code, body = await post(cluster, manifest(field.lower(), **{field: value}))
        assert code == 422, field
        assert body["details"]["causes"][0]["reason"] == reason
    no_task = manifest("no-task")
    del no_task["spec"]["task"]
    code, body = await post(cluster, no_task)
    assert (code, body["details"]["causes"][0]["field"]) == (422, "spec.task")


async def test_the_cel_rule_refuses_two_triggers(cluster):
    code, body = await post(cluster, manifest("both", interval="5m"))
    assert code == 422
    assert "exactly one of cron, interval, rrule, at is required" in body["message"]
    assert body["details"]["causes"][0]["field"] == "spec"


async def test_unknown_fields_are_pruned_except_where_preserved(cluster):
    body = manifest("pruned", kwargs={"free": {"form": 1}}, color="blue")
    body["extra"] = True
    stored = await create(cluster, body)
    assert "color" not in stored["spec"]
    assert "extra" not in stored
    assert stored["spec"]["kwargs"] == {"free": {"form": 1}}


async def test_the_status_subresource_is_validated_too(cluster):
    await create(cluster, manifest("status"))
    code, body = await patch_status(cluster, "status", {"trigger": "t" * 257})
    assert code == 422
    assert body["details"]["causes"][0]["field"] == "status.trigger"
    code, _ = await patch_status(cluster, "status", {"trigger": "t" * 256, "bogus": 1})
    assert code == 200
    stored = cluster.objects["beatkeeper.io/v1alpha1/schedules", "team-a", "status"].raw
    assert stored["status"] == {"trigger": "t" * 256}


async def test_annotations_over_256_kib_are_refused(cluster):
    body = manifest("annotated")
    body["metadata"]["annotations"] = {"a": "x" * (256 * 1024)}
    code, refused = await post(cluster, body)
    assert code == 422
    assert refused["details"]["causes"][0]["field"] == "metadata.annotations"


async def test_an_object_over_the_etcd_limit_is_refused(cluster):
    # Each request stays under the emulator's 1 MiB body limit; the object would not.
    await create(cluster, manifest("huge", args=["x" * (900 * 1024)]))
    patch = {"spec": {"kwargs": {"more": "y" * (900 * 1024)}}}
    async with cluster.patch(
        schedule_url("team-a", "huge"), json=patch, headers=STATUS_JSON
    ) as response:
        assert response.status == 413
        assert (await response.json())["reason"] == "RequestEntityTooLarge"


async def test_generate_name_gives_each_object_its_own_name(cluster):
    names = set()
    for _ in range(3):
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"namespace": "team-a", "generateName": "sched-"},
            "reason": "Test",
        }
        async with cluster.post("/api/v1/namespaces/team-a/events", json=event) as response:
            assert response.status == 200, await response.text()
            names.add((await response.json())["metadata"]["name"])
    assert len(names) == 3
    assert all(name.startswith("sched-") and len(name) == 11 for name in names)


async def test_a_list_pages_and_a_watch_resumes_from_its_resource_version(cluster):
    for index in range(5):
        await create(cluster, manifest(f"s{index}"))
    url = schedule_url("team-a")
    async with cluster.get(url, params={"limit": "2"}) as response:
        first = await response.json()
    names = [item["metadata"]["name"] for item in first["items"]]
    token = first["metadata"]["continue"]
    while token:
        async with cluster.get(url, params={"limit": "2", "continue": token}) as response:
            page = await response.json()
        names += [item["metadata"]["name"] for item in page["items"]]
        token = page["metadata"]["continue"]
    assert names == [f"s{index}" for index in range(5)]
    listed_at = first["metadata"]["resourceVersion"]
    await create(cluster, manifest("after-the-list"))
    params = {"watch": "true", "resourceVersion": listed_at}
    async with cluster.get(url, params=params) as response:
        line = await response.content.readline()
        while not line.strip():
            line = await response.content.readline()
    event = json.loads(line)
    assert (event["type"], event["object"]["metadata"]["name"]) == ("ADDED", "after-the-list")


async def test_marking_an_object_with_a_finalizer_deleted_gets_a_new_resource_version(cluster):
    body = manifest("finalized")
    body["metadata"]["finalizers"] = ["beatkeeper.io/finalizer"]
    created = await create(cluster, body)
    async with cluster.delete(schedule_url("team-a", "finalized")) as response:
        marked = await response.json()
    assert marked["metadata"]["deletionTimestamp"]
    assert int(marked["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])


async def test_a_name_taken_is_a_409_already_exists(cluster):
    await create(cluster, manifest("taken"))
    code, body = await post(cluster, manifest("taken"))
    assert (code, body["kind"], body["reason"]) == (409, "Status", "AlreadyExists")
    async with cluster.get(schedule_url("team-a", "missing")) as response:
        assert response.status == 404
        assert (await response.json())["reason"] == "NotFound"


async def test_a_watch_from_a_version_no_longer_kept_is_410_gone(monkeypatch):
    monkeypatch.setattr(emulator_module, "EVENTS_KEPT", 3)
    small = emulator_module.make_emulator()
    async with small, kmock.Server(small):
        for index in range(5):
            await create(small, manifest(f"s{index}"))
        params = {"watch": "true", "resourceVersion": "1"}
        async with small.get(schedule_url("team-a"), params=params) as response:
            line = await response.content.readline()
            while not line.strip():
                line = await response.content.readline()
    event = json.loads(line)
    assert (event["type"], event["object"]["code"]) == ("ERROR", 410)
