"""Whatever a Schedule holds, the operator's writes stay within the API server's limits."""

from __future__ import annotations

import json

from harness import create, current, events, manifest, ready_becomes

#: A valid cron of 243 characters: every minute of every hour listed one by one.
LONG_CRON = ",".join(map(str, range(60))) + " " + ",".join(map(str, range(24))) + " 1-31 1-12 *"
#: A valid RRULE of about 1,000 characters.
LONG_RRULE = "FREQ=YEARLY;BYYEARDAY=" + ",".join(map(str, range(1, 250)))


async def test_a_long_cron_still_reaches_ready_with_a_clipped_trigger(cluster, start_operator):
    assert len(LONG_CRON) <= 256
    await start_operator()
    zone = "America/Argentina/ComodRivadavia"  # the trigger names the zone too
    await create(cluster, manifest("long-cron", cron=LONG_CRON, timeZone=zone))
    await ready_becomes(cluster, "team-a", "long-cron", status="True", reason="Scheduled")
    trigger = current(cluster, "team-a", "long-cron")["status"]["trigger"]
    assert len(trigger) == 256
    assert trigger.endswith("...")


async def test_a_long_rrule_still_reaches_ready(cluster, start_operator):
    assert len(LONG_RRULE) <= 1024
    await start_operator()
    body = manifest("long-rrule", rrule=LONG_RRULE)
    del body["spec"]["cron"]
    await create(cluster, body)
    condition = await ready_becomes(cluster, "team-a", "long-rrule", status="True")
    assert len(condition["message"]) <= 1024
    assert cluster.refusals["schedules:422"] == 0


async def test_a_large_invalid_spec_reaches_invalid_spec(cluster, start_operator):
    # Over the 64 KiB payload limit, and copied once into kubectl's last-applied annotation:
    # another copy in any annotation would push the object past 256 KiB of annotations.
    body = manifest("bulky", args=["x" * (150 * 1024)])
    annotation = json.dumps(body, separators=(",", ":"))
    body["metadata"]["annotations"] = {
        "kubectl.kubernetes.io/last-applied-configuration": annotation
    }
    await start_operator()
    await create(cluster, body)
    condition = await ready_becomes(cluster, "team-a", "bulky", status="False")
    assert condition["reason"] == "InvalidSpec"
    assert len(condition["message"]) <= 1024
    assert events(cluster, "InvalidSpec")
    assert cluster.refusals["schedules:422"] == 0
