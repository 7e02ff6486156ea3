"""Runnable example workloads for beatkeeper: the tasks behind ``manifests/examples/``.

Each module is one workload (chores, events, credits, outlook, publishing) with Celery
tasks named as the example Schedules name them; ``tasks`` imports them all, so a worker
started with ``BEATKEEPER_IMPORTS=beatkeeper_examples.tasks`` runs every example. Their
tables live in ``db``. Nothing here is imported by beatkeeper itself.
"""
