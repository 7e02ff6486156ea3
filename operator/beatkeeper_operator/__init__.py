"""The control plane: kopf handlers that reconcile Schedule resources into the store.

Importing ``beatkeeper_operator.handlers`` registers the handlers with kopf's default
registry; ``python -m beatkeeper_operator`` (or ``beatkeeper operator``) runs them. This
package imports the core and kopf, never Celery or the worker.
"""
