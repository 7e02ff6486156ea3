"""Social-post publishing: planned from post schedules, published with retries and
per-platform limits, dead-lettered when out of attempts, measured after publishing.

======================  ===============================================  ===============  ==========
module                  task                                             Schedule         queue
======================  ===============================================  ===============  ==========
``scheduler``           ``examples.publishing.scheduler_tick``           every minute     scheduler
``publish``             ``examples.publishing.publish_post``             (sent per job)   publish
``dead_letters``        ``examples.publishing.process_dead_letters``     every 5 minutes  publish
``dead_letters``        ``examples.publishing.replay_dead_letter``       (by hand)        scheduler
``metrics``             ``examples.publishing.capture_metrics``          every 15 min     metrics
======================  ===============================================  ===============  ==========

Only ``client.DryRunClient`` ships here: it records what it would post, makes no network
call, and can be told to fail.
"""

from __future__ import annotations

from beatkeeper_examples.publishing import (
    accounts,
    client,
    dead_letters,
    metrics,
    publish,
    scheduler,
)

__all__ = ["accounts", "client", "dead_letters", "metrics", "publish", "scheduler"]
