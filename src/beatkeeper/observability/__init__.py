"""What a running beatkeeper process tells the outside: Prometheus metrics and health probes.

``metrics`` defines every metric (one place, so the Grafana dashboard can be checked against
it) and how a process exposes them; ``http`` serves ``/metrics``, ``/healthz`` and
``/readyz`` on ``BEATKEEPER_METRICS_PORT``. Neither imports Celery, kopf or SQLAlchemy: the
components decide what their checks mean and register them.
"""
