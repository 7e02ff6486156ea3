"""The data plane: the Celery app, the database-backed Beat scheduler and run tracking."""
