"""A namespaced operator watches only its namespaces: no cluster-wide request its Roles deny."""

from __future__ import annotations

import dataclasses

from harness import create, manifest, ready_becomes


async def test_a_namespaced_operator_never_watches_the_cluster(cluster, start_operator, settings):
    # kopf's cluster scanning would watch CustomResourceDefinitions (and Namespaces for
    # globs) cluster-wide: 403s under the chart's per-namespace Roles.
    await start_operator(settings_=dataclasses.replace(settings, namespaces=("team-a",)))
    await create(cluster, manifest("nightly"))
    await ready_becomes(cluster, "team-a", "nightly", status="True")
    assert cluster.watches, "the operator watched nothing"
    outside = [path for path in cluster.watches if "/namespaces/team-a/" not in path]
    assert outside == [], outside
