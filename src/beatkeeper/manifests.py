"""Read Schedule manifests from files and folders, as `kubectl apply -f` would.

Multi-document YAML (and JSON) files, folders searched recursively for `*.yaml`, `*.yml`
and `*.json`. A YAML syntax error or a duplicate key becomes a `Problem` naming its line;
documents of other API groups (a ConfigMap beside the Schedules) are passed over, as a
folder of mixed manifests is normal, but a `kind: Schedule` of another API group is a
problem naming its apiVersion, and "no Schedule found" says what was passed over.
`check_paths` reads and validates them all, for `validate`, `apply`, `delete` and `dev`
alike. Reads files; writes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from beatkeeper.problems import Problem, SpecError
from beatkeeper.spec import API_VERSION, Validated, validate_manifest

_SUFFIXES = {".yaml", ".yml", ".json"}
_GROUP = API_VERSION.split("/")[0]


@dataclass(frozen=True)
class Document:
    """One document of one file: its content, or the problem that kept it from being read."""

    source: str  # FILE or FILE#N (N counts documents from 1, shown when a file has several)
    content: Any = None
    problem: Problem | None = None
    other: str | None = None  # "apiVersion: v1, kind: ConfigMap": another API, passed over


@dataclass
class Checked:
    """The outcome of reading and validating every document under some paths."""

    valid: list[tuple[Document, Validated]] = field(default_factory=list)
    problems: list[tuple[str, Problem]] = field(default_factory=list)
    warnings: list[tuple[str, Problem]] = field(default_factory=list)
    passed_over: list[tuple[str, str]] = field(default_factory=list)  # (source, what it is)

    def nothing_found(self) -> str:
        """The "no Schedule found" message, naming the documents of other APIs passed over."""
        if not self.passed_over:
            return "no Schedule found"
        shown = "; ".join(f"{source} is {what}" for source, what in self.passed_over[:3])
        more = f"; and {len(self.passed_over) - 3} more" if len(self.passed_over) > 3 else ""
        return f"no Schedule found ({API_VERSION} kind Schedule): {shown}{more}"


def check_paths(paths: Iterable[str | Path], *, now: datetime) -> Checked:
    """Read and validate every Schedule under `paths` (shared by validate, apply, dev)."""
    checked = Checked()
    files = manifest_files(paths)
    for path in files:
        for document in read_documents(path):
            if document.other is not None:
                checked.passed_over.append((document.source, document.other))
                continue
            if document.problem is not None:
                checked.problems.append((document.source, document.problem))
                continue
            try:
                result = validate_manifest(document.content, now=now)
            except SpecError as exc:
                checked.problems += [(document.source, p) for p in exc.problems]
                continue
            checked.valid.append((document, result))
            checked.warnings += [(document.source, w) for w in result.warnings]
    return checked


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing duplicate keys instead of keeping the last silently."""


def _mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=True)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def manifest_files(paths: Iterable[str | Path]) -> list[Path]:
    """The files named, and the manifest files inside the folders named, in a stable order."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.suffix in _SUFFIXES and p.is_file())
        else:
            found.append(path)
    return found


def read_documents(path: Path) -> list[Document]:
    """Every Schedule document of `path`; a file that can't be read is one problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return [Document(str(path), problem=Problem("", f"cannot read: {_reason(exc)}"))]
    return list(parse_documents(text, str(path)))


def parse_documents(text: str, source: str) -> Iterator[Document]:
    """The Schedule documents of one YAML stream, then the first syntax error if any."""
    raw: list[Any] = []
    error: Problem | None = None
    try:
        # extend() keeps the documents read before a syntax error, so they are still checked.
        raw.extend(yaml.load_all(text, Loader=_StrictLoader))
    except yaml.YAMLError as exc:
        error = Problem("", _yaml_message(exc))
    several = len([d for d in raw if d is not None]) > 1 or (error is not None and bool(raw))
    for index, content in enumerate(raw, start=1):
        where = f"{source}#{index}" if several else source
        if content is None:
            continue
        if _other_group(content):
            yield _other_api(where, content)
            continue
        yield Document(where, content=content)
    if error is not None:
        yield Document(f"{source}#{len(raw) + 1}" if raw else source, problem=error)


def _other_group(content: object) -> bool:
    api_version = content.get("apiVersion") if isinstance(content, dict) else None
    return isinstance(api_version, str) and api_version.split("/")[0] != _GROUP


def _other_api(source: str, content: dict[str, Any]) -> Document:
    """A document of another API group: passed over, unless it says it is a Schedule."""
    what = f"apiVersion: {content.get('apiVersion')}, kind: {content.get('kind')}"
    if content.get("kind") != "Schedule":
        return Document(source, other=what)
    problem = Problem(
        "apiVersion",
        f"{what} is not a beatkeeper Schedule: write apiVersion: {API_VERSION}",
    )
    return Document(source, problem=problem)


def _yaml_message(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    return f"YAML syntax error at {where}{problem}"


def _reason(exc: Exception) -> str:
    if isinstance(exc, FileNotFoundError):
        return "no such file"
    if isinstance(exc, IsADirectoryError):
        return "is a directory"
    if isinstance(exc, UnicodeDecodeError):
        return "not UTF-8 text"
    return getattr(exc, "strerror", None) or str(exc)
