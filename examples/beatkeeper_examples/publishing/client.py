"""The platform client seam: ``DryRunClient`` posts nothing and records what it would.

Failures come in two kinds. ``TransientPublishError`` (the network, a timeout, a 5xx) is
worth another attempt; ``PermanentPublishError`` (the post is invalid) never succeeds.
Tests install their own client with ``use`` and make it fail with ``fail_transiently``.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field

__all__ = [
    "MAX_LENGTH",
    "DryRunClient",
    "PermanentPublishError",
    "TransientPublishError",
    "current",
    "use",
]

#: The longest post each platform accepts (characters).
MAX_LENGTH = {"x": 280, "mastodon": 500}


class TransientPublishError(Exception):
    """Worth trying again later."""


class PermanentPublishError(Exception):
    """Will never succeed: the job is marked failed."""


@dataclass
class DryRunClient:
    """Posts nothing; records what it would post. ``fail_transiently(n)`` fails the next n."""

    published: list[tuple[str, str]] = field(default_factory=list)
    token_checks: list[str] = field(default_factory=list)  # platforms asked, in order
    _failures_left: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def fail_transiently(self, times: int) -> None:
        with self._lock:
            self._failures_left = times

    def publish(self, platform: str, body: str) -> str:
        """The id the post would get, or one of the two publish errors."""
        limit = MAX_LENGTH.get(platform)
        if limit is None:
            raise PermanentPublishError(f"unknown platform {platform!r}")
        if len(body) > limit:
            raise PermanentPublishError(f"post is {len(body)} characters, over {limit}")
        with self._lock:
            if self._failures_left > 0:
                self._failures_left -= 1
                raise TransientPublishError("dry run: simulated timeout from the network")
            self.published.append((platform, body))
            return f"dry-run-{platform}-{len(self.published)}"

    def check_token(self, platform: str) -> bool:
        """Whether the account's token for ``platform`` is still accepted (one API call)."""
        if platform not in MAX_LENGTH:
            raise PermanentPublishError(f"unknown platform {platform!r}")
        with self._lock:
            self.token_checks.append(platform)
        return True

    def metrics(self, external_id: str, stage: str) -> dict[str, int]:
        """Stand-in engagement numbers, stable per post and stage."""
        seed = int.from_bytes(hashlib.sha256(f"{external_id}:{stage}".encode()).digest()[:4])
        return {"impressions": seed % 5000, "likes": seed % 97, "reposts": seed % 13}


_client = DryRunClient()


def current() -> DryRunClient:
    """The process's client."""
    return _client


def use(new: DryRunClient) -> DryRunClient:
    """Install ``new`` as the process's client; return the previous one (tests)."""
    global _client
    previous, _client = _client, new
    return previous
