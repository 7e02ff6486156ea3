"""Every example task, for ``BEATKEEPER_IMPORTS=beatkeeper_examples.tasks``."""

from __future__ import annotations

from beatkeeper_examples import chores, credits, events, outlook, publishing

__all__ = ["chores", "credits", "events", "outlook", "publishing"]
