"""Durations as users write them in a Schedule: ``90s``, ``15m``, ``1h30m``, ``2d``, ``1w``.

One spelling for every duration field, so that a manifest reads the same everywhere.
Units run from weeks down to seconds, each at most once and in that order; a bare number
is refused because it would leave the unit to guesswork. Pure: no I/O, no third-party
imports.
"""

from __future__ import annotations

import functools
import re
from datetime import timedelta

_UNITS = (("w", 604_800), ("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1))
_PATTERN = re.compile(r"^(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
#: For the CRD schema: the same grammar as ``parse_duration`` accepts.
DURATION_PATTERN = _PATTERN.pattern
#: Ten years: longer durations are always a typo, and would overflow datetime arithmetic.
MAX_DURATION = timedelta(days=3_653)


@functools.lru_cache(maxsize=1024)
def parse_duration(text: str) -> timedelta:
    """Read ``1h30m`` style text; raise ``ValueError`` with a message a user can act on.

    Kept per text: Beat reads every due schedule's spec, and the same few durations (a
    retry backoff's defaults) came to a third of reading one.
    """
    match = _PATTERN.match(text.strip()) if text.strip() else None
    if match is None:
        raise ValueError(
            f"{text!r} is not a duration: write a number and a unit, largest first, "
            "e.g. 90s, 15m, 1h30m, 2d, 1w"
        )
    seconds = sum(
        int(v) * factor for v, (_, factor) in zip(match.groups(), _UNITS, strict=True) if v
    )
    # Compared as a number first: a huge one would overflow timedelta before the check.
    if seconds > MAX_DURATION.total_seconds():
        raise ValueError(f"{text!r} is longer than ten years")
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """The shortest text ``parse_duration`` reads back as ``value`` (whole seconds)."""
    remaining = int(value.total_seconds())
    if remaining == 0:
        return "0s"
    parts = []
    for unit, factor in _UNITS:
        count, remaining = divmod(remaining, factor)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
