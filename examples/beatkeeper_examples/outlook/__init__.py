"""Daily outlook: personalised outlooks generated ahead, a notification at each user's
local morning, weekly content optimisation and a health check.

===================  ===========================================  =====================
module               task                                         Schedule
===================  ===========================================  =====================
``generation``       ``examples.outlook.generate_daily_outlooks``  daily at 05:00 UTC
``notifications``    ``examples.outlook.send_notifications``       every 15 minutes
``optimisation``     ``examples.outlook.optimize_content``         Sundays at 03:00 UTC
``health``           ``examples.outlook.health_check``             every 4 hours
===================  ===========================================  =====================

All four run on the ``daily_outlook_queue`` queue, with a 10-minute time limit (9 soft).
"""

from __future__ import annotations

from beatkeeper_examples.outlook import generation, health, notifications, optimisation

__all__ = ["generation", "health", "notifications", "optimisation"]
