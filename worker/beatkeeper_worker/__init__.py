"""The data plane: the Celery app, the database-backed Beat scheduler and run tracking.

``celery -A beatkeeper_worker worker`` finds ``app`` here;
``celery -A beatkeeper_worker beat -S beatkeeper_worker.beat:DatabaseScheduler`` runs Beat.
"""

from beatkeeper_worker.app import app as app
from beatkeeper_worker.app import app as celery_app

__all__ = ["app", "celery_app"]
