"""``check_token``: is the account's token for one platform still accepted?

A revoked or expired token makes every publish job of that platform fail until someone
renews it; checking every few minutes says so before a post is due. It is one call to the
platform's API, the same API the metrics capture reads, so both Schedules of a platform
share its ``rateLimit`` key (manifests/examples/publishing.yaml).
"""

from __future__ import annotations

import logging

from celery import shared_task

from beatkeeper_examples.clock import instant
from beatkeeper_examples.publishing import client

__all__ = ["check_token"]

log = logging.getLogger(__name__)


@shared_task(name="examples.publishing.check_token")  # type: ignore[untyped-decorator]
def check_token(platform: str, now: str | None = None) -> dict[str, object]:
    """Ask ``platform`` whether the account's token is valid; an invalid one fails the run."""
    at = instant(now)
    if not client.current().check_token(platform):
        raise client.PermanentPublishError(f"the {platform} token was refused: renew it")
    log.info("%s token accepted at %s", platform, at.isoformat())
    return {"platform": platform, "valid": True}
