"""Recurring chores: instances generated ahead, reminders as they come due, streaks,
leaderboards and clean-up.

One module per job, each a Celery task that an example Schedule names:

===================  ==========================================  ===================
module               task                                        Schedule
===================  ==========================================  ===================
``generation``       ``examples.chores.generate_instances``      every 30 minutes
``reminders``        ``examples.chores.scan_due_instances``      every 5 minutes
``rollups``          ``examples.chores.recompute_streaks``       nightly
``rollups``          ``examples.chores.rebuild_leaderboards``    hourly
``cleanup``          ``examples.chores.prune_old_data``          weekly
===================  ==========================================  ===================
"""

from __future__ import annotations

from beatkeeper_examples.chores import cleanup, generation, reminders, rollups

__all__ = ["cleanup", "generation", "reminders", "rollups"]
