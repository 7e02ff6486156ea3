"""Wall-clock times resolve to instants as RFC 5545 §3.3.5 says, in awkward zones too."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from beatkeeper.recurrence import resolve_local
from beatkeeper.recurrence.zones import wall_clock


def utc(*fields: int) -> datetime:
    return datetime(*fields, tzinfo=UTC)  # type: ignore[misc]


def local(zone: str, *fields: int) -> datetime:
    return resolve_local(datetime(*fields), ZoneInfo(zone))  # type: ignore[misc]


def test_spring_forward_gap_shifts_by_gap_length() -> None:
    # Berlin jumps 02:00 CET -> 03:00 CEST: 02:30 becomes 03:30 CEST.
    instant = local("Europe/Berlin", 2024, 3, 31, 2, 30)
    assert instant == utc(2024, 3, 31, 1, 30)
    assert wall_clock(instant, ZoneInfo("Europe/Berlin")) == datetime(2024, 3, 31, 3, 30)


def test_thirty_minute_gap_on_lord_howe_shifts_by_thirty_minutes() -> None:
    instant = local("Australia/Lord_Howe", 2024, 10, 6, 2, 15)
    assert wall_clock(instant, ZoneInfo("Australia/Lord_Howe")) == datetime(2024, 10, 6, 2, 45)


def test_ambiguous_time_is_its_first_occurrence() -> None:
    assert local("America/New_York", 2024, 11, 3, 1, 30) == utc(2024, 11, 3, 5, 30)  # EDT
    assert local("Australia/Lord_Howe", 2024, 4, 7, 1, 45) == utc(2024, 4, 6, 14, 45)  # +11


def test_skipped_day_in_apia_lands_on_the_same_instant_as_the_day_after() -> None:
    skipped = local("Pacific/Apia", 2011, 12, 30, 9, 0)
    assert skipped == local("Pacific/Apia", 2011, 12, 31, 9, 0) == utc(2011, 12, 30, 19)


def test_midnight_gap_in_santiago_and_sao_paulo_moves_to_one_oclock() -> None:
    santiago = local("America/Santiago", 2024, 9, 8, 0, 30)
    assert wall_clock(santiago, ZoneInfo("America/Santiago")) == datetime(2024, 9, 8, 1, 30)
    sao_paulo = local("America/Sao_Paulo", 2018, 11, 4, 0, 30)
    assert wall_clock(sao_paulo, ZoneInfo("America/Sao_Paulo")) == datetime(2018, 11, 4, 1, 30)


def test_zone_without_dst_is_a_constant_offset() -> None:
    assert local("Asia/Kolkata", 2024, 3, 31, 2, 30) == utc(2024, 3, 30, 21, 0)


def test_result_is_utc() -> None:
    assert local("Europe/London", 2024, 7, 1, 12, 0).tzinfo is UTC


def test_aware_wall_time_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="naive"):
        resolve_local(utc(2024, 1, 1), ZoneInfo("UTC"))


def test_wall_clock_round_trips_outside_transitions() -> None:
    zone = ZoneInfo("Europe/London")
    wall = datetime(2024, 6, 1, 12, 34, 56)
    assert wall_clock(resolve_local(wall, zone), zone) == wall
    assert resolve_local(wall, zone) - resolve_local(wall - timedelta(days=1), zone) == timedelta(
        days=1
    )
