"""The control plane: kopf handlers that reconcile Schedule resources into the store."""
