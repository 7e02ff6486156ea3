"""A one-shot `at` without a UTC offset is a wall-clock time read in `timeZone`, by the same
RFC 5545 rules as `startTime` and `endTime`: a time in a spring-forward gap takes the offset
from before the gap, an ambiguous one is its first occurrence."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from beatkeeper.spec import recurrence_of, validate_manifest

NOW = datetime(2026, 1, 10, 12, tzinfo=UTC)


def document(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "beatkeeper.io/v1alpha1",
        "kind": "Schedule",
        "metadata": {"name": "greeting", "namespace": "team"},
        "spec": {"task": "team.greet", **spec},
    }


def fires_at(**spec: Any) -> datetime | None:
    manifest = validate_manifest(document(**spec), now=NOW).manifest
    return recurrence_of(manifest.spec, seed="s", created_at=NOW).first()


@pytest.mark.parametrize(
    ("at", "zone", "instant"),
    [
        # Christmas Eve at 18:00 in Paris (CET, +01:00).
        ("2026-12-24T18:00:00", "Europe/Paris", "2026-12-24T17:00:00+00:00"),
        # Summer time in Paris (CEST, +02:00).
        ("2026-07-14T22:00:00", "Europe/Paris", "2026-07-14T20:00:00+00:00"),
        # 02:30 does not exist on 29 March 2026 in Paris: the offset from before the gap
        # (+01:00) makes it 01:30 UTC, which the wall clock shows as 03:30.
        ("2026-03-29T02:30:00", "Europe/Paris", "2026-03-29T01:30:00+00:00"),
        # 02:30 happens twice on 25 October 2026 in Paris: the first one (+02:00).
        ("2026-10-25T02:30:00", "Europe/Paris", "2026-10-25T00:30:00+00:00"),
        # New York's gap and fold.
        ("2026-03-08T02:15:00", "America/New_York", "2026-03-08T07:15:00+00:00"),
        ("2026-11-01T01:30:00", "America/New_York", "2026-11-01T05:30:00+00:00"),
        # Without a timeZone, UTC.
        ("2026-06-01T09:00:00", "UTC", "2026-06-01T09:00:00+00:00"),
    ],
)
def test_a_local_at_is_read_in_the_time_zone(at: str, zone: str, instant: str) -> None:
    assert fires_at(at=at, timeZone=zone) == datetime.fromisoformat(instant)


def test_an_at_with_an_offset_ignores_the_time_zone() -> None:
    when = fires_at(at="2026-12-24T18:00:00+05:30", timeZone="Europe/Paris")
    assert when == datetime(2026, 12, 24, 12, 30, tzinfo=UTC)


def test_a_local_at_already_past_in_its_zone_is_a_warning() -> None:
    # 12:30 in Auckland (+13:00) on 10 January is 23:30 UTC the day before: already past.
    result = validate_manifest(
        document(at="2026-01-10T12:30:00", timeZone="Pacific/Auckland"), now=NOW
    )
    assert [w.path for w in result.warnings] == ["spec.at"]
    assert "2026-01-09T23:30:00+00:00" in result.warnings[0].message


def test_a_local_at_keeps_its_wall_time_in_the_stored_spec() -> None:
    manifest = validate_manifest(document(at="2026-12-24T18:00:00"), now=NOW).manifest
    assert manifest.spec.model_dump(mode="json", by_alias=True)["at"] == "2026-12-24T18:00:00"
