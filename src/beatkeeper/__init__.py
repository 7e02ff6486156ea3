"""beatkeeper: Celery schedules declared as Kubernetes resources, planned exactly once."""

__version__ = "0.1.0"
