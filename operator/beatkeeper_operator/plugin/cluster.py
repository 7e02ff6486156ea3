"""The Kubernetes API as the plugin uses it: Schedules read and patched with the caller's
kubeconfig, context and RBAC, and every refusal turned into one line naming the object.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import urllib3.exceptions
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from beatkeeper.spec.model import GROUP, PLURAL, VERSION

__all__ = ["GROUP", "PLURAL", "VERSION", "Cluster", "ClusterError", "connect"]

RESOURCE = f"{PLURAL}.{GROUP}"
_IN_CLUSTER_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


class ClusterError(RuntimeError):
    """The API server could not be reached or refused a request; the message says which."""


@dataclass
class Cluster:
    """The Schedules API of one kubeconfig context, and that context's namespace."""

    api: client.CustomObjectsApi
    namespace: str
    server: str

    def get(self, namespace: str, name: str) -> dict[str, Any]:
        with self._asking("get", namespace, name):
            found = self.api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        return _object(found)

    def patch(self, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """A JSON merge patch (the client's default for a dict body)."""
        with self._asking("patch", namespace, name):
            patched = self.api.patch_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name, body
            )
        return _object(patched)

    def list(self, namespace: str | None) -> list[dict[str, Any]]:
        """The Schedules of ``namespace``, or of every namespace when None."""
        with self._asking("list", namespace, None):
            if namespace is None:
                found = self.api.list_cluster_custom_object(GROUP, VERSION, PLURAL)
            else:
                found = self.api.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
        return list(_object(found).get("items") or [])

    @contextlib.contextmanager
    def _asking(self, verb: str, namespace: str | None, name: str | None) -> Iterator[None]:
        try:
            yield
        except ApiException as exc:
            raise ClusterError(_refusal(exc, verb, namespace, name)) from None
        except urllib3.exceptions.HTTPError as exc:
            reason = getattr(exc, "reason", None) or exc
            raise ClusterError(f"cannot reach the API server at {self.server}: {reason}") from None


def _object(found: object) -> dict[str, Any]:
    """The client returns deserialised JSON for custom objects, typed as ``object``."""
    return dict(found) if isinstance(found, dict) else {}


def _refusal(exc: ApiException, verb: str, namespace: str | None, name: str | None) -> str:
    what = f'{RESOURCE} "{name}"' if name else RESOURCE
    where = f'in namespace "{namespace}"' if namespace else "in any namespace"
    if exc.status == 404:
        return f"{what} not found {where} ({verb})"
    if exc.status == 403:
        return f"forbidden: you cannot {verb} {what} {where}; ask for RBAC that allows it"
    if exc.status == 401:
        return f"unauthorized: the API server did not accept your credentials ({verb} {what})"
    return f"{verb} {what} {where} failed: HTTP {exc.status} {exc.reason}: {_message(exc)}"


def _message(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body or "{}").get("message") or exc.body)
    except ValueError:
        return str(exc.body)


def connect(context: str | None) -> Cluster:
    """The cluster of kubeconfig ``context`` (the current one when None), or in-cluster."""
    try:
        if context is None and "KUBERNETES_SERVICE_HOST" in os.environ and not _has_kubeconfig():
            config.load_incluster_config()  # type: ignore[no-untyped-call]
            namespace = _IN_CLUSTER_NAMESPACE.read_text(encoding="utf-8").strip()
            api_client = client.ApiClient()
        else:
            files = _kubeconfig()
            api_client = config.new_client_from_config(files, context=context)  # type: ignore[no-untyped-call]
            namespace = _context_namespace(files, context)
    except (ConfigException, OSError, yaml.YAMLError) as exc:
        raise ClusterError(f"cannot load the kubeconfig: {_one_line(exc)}") from None
    server = str(api_client.configuration.host)
    return Cluster(client.CustomObjectsApi(api_client), namespace or "default", server)


def _kubeconfig() -> str:
    """The kubeconfig file(s) as kubectl finds them: ``$KUBECONFIG``, else ~/.kube/config."""
    return os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")


def _has_kubeconfig() -> bool:
    return any(Path(path).is_file() for path in _kubeconfig().split(os.pathsep) if path)


def _context_namespace(files: str, context: str | None) -> str:
    contexts, active = config.list_kube_config_contexts(files)  # type: ignore[no-untyped-call]
    chosen = next((c for c in contexts if c.get("name") == context), None) if context else active
    return str(((chosen or {}).get("context") or {}).get("namespace") or "default")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
