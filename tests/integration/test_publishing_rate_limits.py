"""The publishing example's per-platform rateLimits, in Beat's tick with a clock the test moves.

Each platform's metrics capture and token check share one key (``x``, ``mastodon``): a
burst of manual runs on one platform is held back within its budget, never spends the
other platform's, and the normal cadence fits the budget with room to spare.
"""

from __future__ import annotations

import copy
from collections import Counter
from datetime import timedelta
from pathlib import Path

import yaml
from sqlalchemy import select
from test_planning import MINUTE, T0, Beat, beat
from test_rate_limit import at_most

from beatkeeper.spec import validate_manifest
from beatkeeper.states import RunState
from beatkeeper.store import lookups, requests
from beatkeeper.store.models import rate_sends
from beatkeeper.store.schedules import apply_schedule

__all__ = ["beat"]  # the fixture, used by name

MANIFEST = Path(__file__).parents[2] / "manifests" / "examples" / "publishing.yaml"


def limited_documents() -> list[dict[str, object]]:
    documents = [doc for doc in yaml.safe_load_all(MANIFEST.read_text()) if doc]
    return [doc for doc in documents if "rateLimit" in doc["spec"]]


def apply_examples(beat: Beat) -> dict[str, dict[str, object]]:
    """The rate-limited example Schedules, on the test's queue; their rateLimit by name."""
    limits = {}
    for original in limited_documents():
        document = copy.deepcopy(original)
        document["spec"]["queue"] = beat.queue  # type: ignore[index]
        manifest = validate_manifest(document, now=T0).manifest
        with beat.engine.begin() as db:
            apply_schedule(db, manifest, now=T0)
        limits[manifest.metadata.name] = document["spec"]["rateLimit"]  # type: ignore[index]
    return limits


def sends(beat: Beat) -> dict[str, list[object]]:
    with beat.engine.connect() as db:
        rows = db.execute(select(rate_sends.c.key, rate_sends.c.sent_at)).all()
    found: dict[str, list[object]] = {}
    for key, sent_at in rows:
        found.setdefault(key, []).append(sent_at)
    return found


def test_each_platforms_schedules_share_one_key_and_both_keys_exist() -> None:
    keys = Counter(doc["spec"]["rateLimit"]["key"] for doc in limited_documents())  # type: ignore[index]
    assert keys == {"x": 2, "mastodon": 2}


def test_a_burst_on_one_platform_never_exceeds_its_budget(beat: Beat) -> None:
    limits = apply_examples(beat)
    [budget] = {(limit["runs"], limit["per"]) for limit in limits.values()}  # type: ignore[index]
    runs, per = int(budget[0]), timedelta(minutes=int(str(budget[1]).removesuffix("m")))
    now = T0
    while now < T0 + 90 * MINUTE:
        now += MINUTE
        if now == T0 + 20 * MINUTE:  # someone triggers the x token check ten times
            with beat.engine.begin() as db:
                token_check = lookups.find_schedule(db, "default", "publishing-check-token-x")
                for _ in range(10):
                    requests.trigger(db, token_check, now=now)
        beat.tick_at(now)

    sent = sends(beat)
    assert set(sent) == {"x", "mastodon"}
    for key, times in sent.items():
        assert at_most(sorted(times), runs, per), key  # type: ignore[arg-type]
    # The burst was held back: x sent more than mastodon, but only as the budget let it.
    assert len(sent["x"]) > len(sent["mastodon"])
    # The burst filled x's window to the budget; the rest waited until their
    # startingDeadline passed and were recorded missed, never sent over the limit.
    burst = T0 + 20 * MINUTE
    assert sum(1 for t in sent["x"] if burst - per < t <= burst) == runs  # type: ignore[operator]
    missed = [run for run in beat.runs() if run.state == RunState.MISSED]
    assert missed
    assert {run.schedule_id for run in missed} == {_id(beat, "publishing-check-token-x")}
    # Mastodon's cadence (a capture each quarter hour, a check each 5 minutes) was never held:
    # each run went out, or was skipped by Forbid while the last (no worker here) waited.
    mastodon_runs = [
        run
        for name in ("publishing-capture-metrics-mastodon", "publishing-check-token-mastodon")
        for run in beat.runs()
        if run.schedule_id == _id(beat, name)
    ]
    assert {run.state for run in mastodon_runs} == {RunState.ENQUEUED, RunState.SKIPPED}


def _id(beat: Beat, name: str) -> object:
    with beat.engine.begin() as db:
        return lookups.find_schedule(db, "default", name).id
