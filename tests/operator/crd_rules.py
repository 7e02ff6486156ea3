"""What a real API server enforces on a stored object, for the emulator to enforce too.

For Schedules, the CRD that ``beatkeeper.crd`` generates (the one the chart installs):
structural pruning of unknown fields (except under ``x-kubernetes-preserve-unknown-fields``),
the OpenAPI v3 schema with its limits (types, ``required``, ``enum``, ``pattern``,
``maxLength``, ``maxItems``, bounds) on spec and status alike, and the CEL rules
(``x-kubernetes-validations``). For every object: ``metadata.name`` must be a DNS
subdomain, annotations together at most 256 KiB, and the whole object at most what etcd
stores in one request (1.5 MiB).

``problems`` returns Kubernetes-style causes (``field``, ``reason``, ``message``);
``status_body`` renders them as the ``Status`` a real server answers with. Test- and
benchmark-side only: nothing in the product imports it.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator
from typing import Any

import celpy
import jsonschema

from beatkeeper.crd import schedule_crd

__all__ = [
    "MAX_ANNOTATIONS_BYTES",
    "MAX_OBJECT_BYTES",
    "Cause",
    "problems",
    "prune",
    "prune_schedule",
    "schedule_schema",
    "status_body",
    "too_large",
]

#: The most an object's annotation keys and values may hold together (apimachinery's limit).
MAX_ANNOTATIONS_BYTES = 256 * 1024
#: etcd's default request limit (--max-request-bytes), which caps one stored object.
MAX_OBJECT_BYTES = 1536 * 1024
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")

Cause = dict[str, str]


@functools.cache
def schedule_schema() -> dict[str, Any]:
    """The Schedule's ``openAPIV3Schema`` as the generated CRD carries it."""
    version = schedule_crd()["spec"]["versions"][0]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def prune_schedule(body: dict[str, Any]) -> dict[str, Any]:
    """A Schedule as the API server stores it: ``metadata`` is the server's own, not pruned."""
    pruned: dict[str, Any] = prune({**body, "metadata": {}}, schedule_schema())
    return {**pruned, "metadata": body.get("metadata", {})}


def prune(value: Any, schema: dict[str, Any]) -> Any:
    """``value`` without the fields ``schema`` does not declare, as the API server stores it."""
    if isinstance(value, list):
        items = schema.get("items", {})
        return [prune(item, items) for item in value]
    if not isinstance(value, dict) or schema.get("x-kubernetes-preserve-unknown-fields"):
        return value
    properties = schema.get("properties")
    extra = schema.get("additionalProperties")
    if properties is None and isinstance(extra, dict):
        return {key: prune(item, extra) for key, item in value.items()}
    if properties is None:
        return value if schema.get("type") != "object" or not value else {}
    return {key: prune(item, properties[key]) for key, item in value.items() if key in properties}


def problems(body: dict[str, Any], *, schedule: bool) -> list[Cause]:
    """Every rule ``body`` breaks: metadata, then (a Schedule) the schema and CEL rules."""
    causes = _metadata_problems(body.get("metadata") or {})
    if schedule:
        errors = sorted(_validator().iter_errors(body), key=lambda e: list(map(str, e.path)))
        causes.extend(_schema_cause(error) for error in errors)
        if not causes:  # a real server runs CEL only on values of the declared types
            causes.extend(_cel_problems(body, schedule_schema(), ""))
    return causes


def too_large(body: dict[str, Any]) -> bool:
    return len(json.dumps(body, separators=(",", ":"))) > MAX_OBJECT_BYTES


def status_body(
    *, code: int, reason: str, kind: str, name: str, causes: list[Cause]
) -> dict[str, Any]:
    """The ``Status`` a real API server returns for a refused write."""
    listed = [f"{c['field']}: {c['message']}" if c["field"] else c["message"] for c in causes]
    detail = listed[0] if len(listed) == 1 else f"[{', '.join(listed)}]"
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": f'{kind} "{name}" is invalid: {detail}',
        "reason": reason,
        "details": {"name": name, "kind": kind, "causes": causes},
        "code": code,
    }


def _metadata_problems(meta: dict[str, Any]) -> list[Cause]:
    causes: list[Cause] = []
    name = meta.get("name") or ""
    if len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
        message = f'Invalid value: "{name[:64]}": a lowercase RFC 1123 subdomain'
        causes.append(_cause("metadata.name", "FieldValueInvalid", message))
    annotations = meta.get("annotations") or {}
    size = sum(len(str(key)) + len(str(value)) for key, value in annotations.items())
    if size > MAX_ANNOTATIONS_BYTES:
        message = f"Too long: must have at most {MAX_ANNOTATIONS_BYTES} bytes"
        causes.append(_cause("metadata.annotations", "FieldValueTooLong", message))
    return causes


@functools.cache
def _validator() -> Any:
    checker = jsonschema.Draft7Validator.FORMAT_CHECKER
    return jsonschema.Draft7Validator(schedule_schema(), format_checker=checker)


def _schema_cause(error: jsonschema.ValidationError) -> Cause:
    path = _field(error.absolute_path)
    limit, value = error.validator_value, error.instance
    if error.validator == "required":
        missing = str(error.message).split("'")[1]
        return _cause(_join(path, missing), "FieldValueRequired", "Required value")
    if error.validator == "maxLength":
        return _cause(path, "FieldValueTooLong", f"Too long: may not be more than {limit} bytes")
    if error.validator == "maxItems":
        message = f"Too many: {len(value)}: must have at most {limit} items"
        return _cause(path, "FieldValueTooMany", message)
    if error.validator == "enum":
        supported = ", ".join(json.dumps(v) for v in limit)
        message = f"Unsupported value: {json.dumps(value)}: supported values: {supported}"
        return _cause(path, "FieldValueNotSupported", message)
    if error.validator == "type":
        message = f"Invalid value: {_shown(value)}: {path} in body must be of type {limit}"
        return _cause(path, "FieldValueTypeInvalid", message)
    if error.validator == "pattern":
        message = f"Invalid value: {_shown(value)}: {path} in body should match '{limit}'"
        return _cause(path, "FieldValueInvalid", message)
    return _cause(path, "FieldValueInvalid", f"Invalid value: {_shown(value)}: {error.message}")


def _cel_problems(value: Any, schema: dict[str, Any], path: str) -> Iterator[Cause]:
    for rule in schema.get("x-kubernetes-validations", []):
        if not _passes(rule["rule"], json.dumps(value, sort_keys=True)):
            message = rule.get("message") or f"failed rule: {rule['rule']}"
            yield _cause(path, "FieldValueInvalid", f'Invalid value: "object": {message}')
    if isinstance(value, dict):
        for key, subschema in (schema.get("properties") or {}).items():
            if key in value:
                yield from _cel_problems(value[key], subschema, _join(path, key))
    elif isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            yield from _cel_problems(item, schema["items"], f"{path}[{index}]")


@functools.lru_cache(maxsize=10_000)
def _passes(rule: str, value: str) -> bool:
    """One CEL rule on one value (as JSON): cached, since a status write repeats the spec."""
    return bool(_program(rule).evaluate({"self": celpy.json_to_cel(json.loads(value))}))


@functools.cache
def _program(rule: str) -> Any:
    environment = celpy.Environment()
    return environment.program(environment.compile(rule))


def _field(path: Any) -> str:
    field = ""
    for part in path:
        field = f"{field}[{part}]" if isinstance(part, int) else _join(field, str(part))
    return field


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _shown(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, str) else f'"{type(value).__name__}"'
    return text if len(text) <= 80 else text[:77] + '..."'


def _cause(field: str, reason: str, message: str) -> Cause:
    return {"field": field, "reason": reason, "message": message}
