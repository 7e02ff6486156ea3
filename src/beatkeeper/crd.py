"""The Schedule CustomResourceDefinition, generated from the spec models.

`manifests/crds/schedules.beatkeeper.io.yaml` is this module's output (a test keeps them
equal), so the API server prunes and validates exactly what `beatkeeper validate` does.
pydantic's JSON schema is turned into a Kubernetes *structural* schema: references
inlined, optional fields un-nulled, defaults moved into descriptions (the API server would
otherwise write them into every stored object), a description on every field. Pure.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from beatkeeper.spec import API_VERSION, KIND, ScheduleSpec
from beatkeeper.spec.model import TRIGGER_FIELDS
from beatkeeper.spec.status import ScheduleStatus

GROUP, VERSION = API_VERSION.split("/")
PLURAL, SINGULAR = "schedules", "schedule"
_DROPPED = {"title", "default", "$defs"}


def schedule_crd() -> dict[str, Any]:
    """The whole CRD object, ready to serialise as YAML."""
    spec_schema = structural(ScheduleSpec)
    spec_schema["description"] = "What runs and when; exactly one of cron, interval, rrule, at."
    spec_schema["x-kubernetes-validations"] = [
        {
            "rule": f"[{', '.join(f'has(self.{f})' for f in TRIGGER_FIELDS)}].exists_one(x, x)",
            "message": "exactly one of cron, interval, rrule, at is required",
        }
    ]
    status_schema = structural(ScheduleStatus)
    status_schema["description"] = "What beatkeeper reports; written by the operator only."
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": ["sched"],
                "categories": ["beatkeeper"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": _printer_columns(),
                    "schema": {"openAPIV3Schema": _root(spec_schema, status_schema)},
                }
            ],
        },
    }


def _root(spec_schema: dict[str, Any], status_schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "description": "A Celery task run on a schedule: cron, interval, RRULE or one instant.",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": "beatkeeper.io/v1alpha1"},
            "kind": {"type": "string", "description": "Schedule"},
            "metadata": {"type": "object"},
            "spec": spec_schema,
            "status": status_schema,
        },
    }


def _printer_columns() -> list[dict[str, Any]]:
    def column(name: str, path: str, kind: str = "string", **extra: Any) -> dict[str, Any]:
        return {"name": name, "type": kind, "jsonPath": path, **extra}

    return [
        column("Ready", '.status.conditions[?(@.type=="Ready")].status'),
        column("Trigger", ".status.trigger"),
        # A future time as type=date would print "<invalid>": kubectl only ages past times.
        column("Next Run", ".status.nextRunTimes[0]"),
        column("Last Schedule", ".status.lastScheduleTime", "date"),
        column("Last State", ".status.lastRun.state"),
        column("Age", ".metadata.creationTimestamp", "date"),
        column("Task", ".spec.task", priority=1),
        column("Suspend", ".spec.suspend", "boolean", priority=1),
    ]


def structural(model: type[BaseModel]) -> dict[str, Any]:
    """`model`'s JSON schema as a Kubernetes structural schema (field names by alias)."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    return _convert(raw, raw.get("$defs", {}))


def _convert(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in node:
        merged = {**defs[node["$ref"].rsplit("/", 1)[-1]], **_without(node, {"$ref"})}
        return _convert(merged, defs)
    options = [o for o in node.get("anyOf", []) if o.get("type") != "null"]
    if "anyOf" in node and len(options) == 1:
        return _convert({**options[0], **_without(node, {"anyOf"})}, defs)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED:
            continue
        if key == "properties":
            out[key] = {name: _convert(sub, defs) for name, sub in value.items()}
        elif key in {"items", "additionalProperties"} and isinstance(value, dict):
            out[key] = _convert(value, defs)
        else:
            out[key] = value
    if node.get("type") == "object" and "additionalProperties" in out and "properties" in out:
        del out["additionalProperties"]  # extra="forbid": the API server prunes instead
    if "default" in node and node["default"] not in (None, "", [], {}):
        out["description"] = (
            f"{out.get('description', '').rstrip('.')}. Default: {_show(node['default'])}."
        )
    return out


def _without(node: dict[str, Any], keys: set[str]) -> dict[str, Any]:
    return {k: v for k, v in node.items() if k not in keys}


def _show(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)
