"""Turn a manifest (a parsed YAML/JSON document) into a `Schedule`, or say what is wrong.

Every problem names the dotted field path and says in plain words what is wrong, and all
problems are reported at once. The checks that need the recurrence engine (a cron that can
never fire, a last occurrence already past) live here, next to the model checks, so the
CLI and the operator report the same. They need a valid spec, so when another field is
wrong they run on the fields they read alone (``_checked_apart``): a wrong priority and a
cron that cannot fire are reported together, not one per attempt. Pure: no I/O.
"""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ValidationError

from beatkeeper.problems import Problem, SpecError
from beatkeeper.recurrence import RecurrenceError
from beatkeeper.spec.model import API_VERSION, TRIGGER_FIELDS, ScheduleManifest, trigger_problem
from beatkeeper.spec.timing import at_instant, recurrence_of
from beatkeeper.spec.values import path_segment, value_problems

#: args and kwargs together, as compact JSON.
MAX_PAYLOAD_BYTES = 64 * 1024

_PATTERN_MESSAGES = {
    "metadata.name": "must be a DNS-1123 subdomain: lowercase letters, digits, '-' and '.', "
    "starting and ending with a letter or digit",
    "metadata.namespace": "must be a DNS-1123 label: lowercase letters, digits and '-', "
    "starting and ending with a letter or digit",
    "spec.task": "must be a Celery task name such as billing.tasks.charge "
    "(letters, digits, '_', '.', ':' and '-')",
    "spec.queue": "must be a queue name of letters, digits, '.', '_' and '-'",
}


@dataclass(frozen=True)
class Validated:
    """A valid manifest, with what deserves a warning but is not wrong."""

    manifest: ScheduleManifest
    warnings: list[Problem]


def validate_manifest(document: object, *, now: datetime) -> Validated:
    """Validate one document; raise `SpecError` listing every problem found."""
    if not isinstance(document, Mapping):
        raise SpecError([Problem("", f"a Schedule must be a mapping, got {_kind(document)}")])
    if found := value_problems(document):
        raise SpecError(found)
    try:
        manifest = ScheduleManifest.model_validate(dict(document))
    except ValidationError as exc:
        found = _problems(exc, ScheduleManifest) + _checked_apart(document, now=now)
        raise SpecError(sorted(set(found))) from None
    warnings: list[Problem] = []
    problems = _spec_problems(manifest, now=now, warnings=warnings)
    if problems:
        raise SpecError(problems)
    return Validated(manifest=manifest, warnings=warnings)


def _spec_problems(
    manifest: ScheduleManifest, *, now: datetime, warnings: list[Problem]
) -> list[Problem]:
    """What a valid model can still get wrong: the payload's size, and when it runs."""
    return _payload_problems(manifest) + _timing_problems(manifest, now=now, warnings=warnings)


#: What ``_spec_problems`` reads of a spec, besides the payload.
_TIMING_FIELDS = frozenset({
    "cron", "interval", "rrule", "at", "timeZone", "startTime", "endTime", "maxRuns",
    "exclude", "jitter", "timeLimit", "softTimeLimit",
})  # fmt: skip


def _checked_apart(document: Mapping[str, Any], *, now: datetime) -> list[Problem]:
    """``_spec_problems`` of the spec's payload and timing fields alone, in a stand-in manifest.

    The model's own checks of those fields come back too (the same problems as the whole
    document's, which the caller's set folds away), and the one it skipped because another
    field was wrong: "exactly one of cron, interval, rrule, at".
    """
    spec = document.get("spec")
    if not isinstance(spec, Mapping):
        return []
    read = {key: value for key, value in spec.items() if key in _TIMING_FIELDS | {"args", "kwargs"}}
    stand_in = {
        "apiVersion": API_VERSION,
        "kind": "Schedule",
        "metadata": {"name": "stand-in"},
        "spec": {**read, "task": "stand.in"},
    }
    try:
        manifest = ScheduleManifest.model_validate(stand_in)
    except ValidationError as exc:
        # A wrong timing field stops the model before its own check of the triggers.
        given = [name for name in TRIGGER_FIELDS if spec.get(name) is not None]
        wrong = trigger_problem(given)
        return _problems(exc, ScheduleManifest) + ([Problem("spec", wrong)] if wrong else [])
    return _spec_problems(manifest, now=now, warnings=[])


def _problems(exc: ValidationError, model: type[BaseModel]) -> list[Problem]:
    result = []
    for error in exc.errors(include_url=False):
        path = _path(error["loc"])
        result.append(Problem(path, _message(error, path, model)))
    return sorted(set(result))


def _path(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int) or not part.startswith("function-"):
            text += path_segment(part, first=not text)
    return text


def _message(error: Mapping[str, Any], path: str, model: type[BaseModel]) -> str:
    kind, ctx, value = error["type"], error.get("ctx") or {}, error.get("input")
    if kind == "extra_forbidden":
        return "unknown field" + _suggestion(path, model)
    if kind == "missing":
        return "is required"
    if kind == "string_pattern_mismatch":
        return _PATTERN_MESSAGES.get(path, f"does not match {ctx.get('pattern')}")
    if kind == "literal_error":
        return f"must be {ctx.get('expected')}, got {value!r}"
    if kind in {"greater_than_equal", "greater_than"}:
        return f"must be at least {ctx.get('ge', ctx.get('gt'))}, got {value!r}"
    if kind in {"less_than_equal", "less_than"}:
        return f"must be at most {ctx.get('le', ctx.get('lt'))}, got {value!r}"
    if kind == "string_too_long":
        return f"is too long: at most {ctx.get('max_length')} characters"
    if kind == "string_too_short":
        return "must not be empty"
    if kind == "too_long":
        return f"has too many items: at most {ctx.get('max_length')}"
    if kind in {"int_type", "int_parsing", "int_from_float"}:
        return f"must be a whole number, got {value!r}"
    if kind in {"float_type", "float_parsing"}:
        return f"must be a number, got {value!r}"
    if kind in {"bool_type", "bool_parsing"}:
        return f"must be true or false, got {value!r}"
    if kind == "string_type":
        return f"must be a string, got {_kind(value)}"
    if kind in {"list_type", "tuple_type"}:
        return f"must be a list, got {_kind(value)}"
    if kind in {"dict_type", "model_type", "model_attributes_type"}:
        return f"must be a mapping, got {_kind(value)}"
    message = str(error["msg"])
    return message.removeprefix("Value error, ")


def _suggestion(path: str, model: type[BaseModel]) -> str:
    """`spec.timezone` → `(did you mean timeZone?)`: most unknown fields are typos."""
    parts = [p for p in path.split(".") if p and not p.endswith("]")]
    if not parts:
        return ""
    current: type[BaseModel] | None = model
    for part in parts[:-1]:
        field = _field_by_alias(current, part) if current else None
        annotation = field.annotation if field else None
        current = (
            annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel)
            else None
        )
    if current is None:
        return ""
    names = [f.alias or n for n, f in current.model_fields.items()]
    close = difflib.get_close_matches(parts[-1], names, n=1, cutoff=0.6)
    close = close or [n for n in names if n.lower() == parts[-1].lower()]
    return f" (did you mean {close[0]}?)" if close else ""


def _field_by_alias(model: type[BaseModel], alias: str) -> Any:
    return next((f for n, f in model.model_fields.items() if (f.alias or n) == alias), None)


def _payload_problems(manifest: ScheduleManifest) -> list[Problem]:
    spec = manifest.spec
    problems = [
        Problem(path, "must be JSON (quote dates and times; no NaN or infinity)")
        for path in _non_json(spec.args, "spec.args") + _non_json(spec.kwargs, "spec.kwargs")
    ]
    if problems:
        return problems
    size = len(json.dumps([spec.args, spec.kwargs], separators=(",", ":")).encode())
    if size > MAX_PAYLOAD_BYTES:
        return [
            Problem(
                "spec",
                f"args and kwargs together are {size:,} bytes as JSON; "
                f"the limit is {MAX_PAYLOAD_BYTES:,} (64 KiB): "
                "pass an id and load the data in the task",
            )
        ]
    return []


def _non_json(value: object, path: str) -> list[str]:
    if isinstance(value, Mapping):
        return [p for k, v in value.items() for p in _non_json(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _non_json(v, f"{path}[{i}]")]
    if isinstance(value, float) and not math.isfinite(value):
        return [path]
    if value is None or isinstance(value, str | int | float | bool):
        return []
    return [path]


def _timing_problems(
    manifest: ScheduleManifest, *, now: datetime, warnings: list[Problem]
) -> list[Problem]:
    spec = manifest.spec
    if spec.time_limit and spec.soft_time_limit and spec.soft_time_limit >= spec.time_limit:
        return [Problem("spec.softTimeLimit", "must be shorter than timeLimit")]
    field = f"spec.{spec.trigger_field}"
    try:
        recurrence = recurrence_of(spec, seed=manifest.metadata.uid or "", created_at=now)
    except RecurrenceError as exc:
        return [Problem(field, str(exc))]
    start, end = recurrence.start, recurrence.end
    if spec.start_time and start is not None and end is not None and end < start:
        return [Problem("spec.endTime", "must not be before startTime")]
    if past := _already_past(recurrence.end, now):
        warnings.append(Problem("spec.endTime", f"{past} is already past: nothing will run"))
    elif past := _already_past(at_instant(spec) or recurrence.ended_by(now), now):
        warnings.append(Problem(field, f"the last occurrence ({past}) is already past"))
    elif recurrence.first() is None:
        return [Problem(field, _never_fires(manifest))]
    return []


def _already_past(moment: datetime | None, now: datetime) -> str:
    return moment.isoformat() if moment is not None and moment <= now else ""


def _never_fires(manifest: ScheduleManifest) -> str:
    spec = manifest.spec
    if spec.exclude.dates or spec.exclude.months or spec.end_time:
        return "never fires within startTime, endTime and exclude"
    return "never fires: no date matches it"


def _kind(value: object) -> str:
    names = {dict: "a mapping", list: "a list", str: "a string", bool: "true/false"}
    return names.get(type(value), type(value).__name__)
