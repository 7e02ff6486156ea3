"""Read Schedule manifests from files and folders, as `kubectl apply -f` would.

Multi-document YAML (and JSON) files, folders searched recursively for `*.yaml`, `*.yml`
and `*.json`. A YAML syntax error or a duplicate key becomes a `Problem` naming its line;
documents of other API groups (a ConfigMap beside the Schedules) are passed over, as a
folder of mixed manifests is normal. `check_paths` reads and validates them all, for
`validate`, `apply`, `delete` and `dev` alike, and refuses two documents that name the same
Schedule. Reads files; writes nothing.

Hostile files are refused before they cost anything: a file larger than
``MAX_FILE_BYTES`` is not read, nesting deeper than ``MAX_DEPTH`` stops the YAML composer
(which recurses per level), and a document using more than ``MAX_ALIASES`` aliases is
refused (an "anchor bomb" of a few hundred bytes otherwise expands to millions of values
in the validator). ``validate_manifest`` then counts the expanded values and depth itself,
for documents that did not come from a file.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from beatkeeper.problems import Problem, SpecError
from beatkeeper.spec import API_VERSION, MAX_DEPTH, Validated, validate_manifest

_SUFFIXES = {".yaml", ".yml", ".json"}
_GROUP = API_VERSION.split("/")[0]
#: A manifest file larger than this is refused unread (a Schedule's payload is <= 64 KiB).
MAX_FILE_BYTES = 4 * 1024 * 1024
#: Aliases (``*name``) one document may use; real manifests use a handful at most.
MAX_ALIASES = 100
#: YAML nesting: the validator's depth limit for values, plus room for the fields above.
_MAX_NESTING = MAX_DEPTH + 8


@dataclass(frozen=True)
class Document:
    """One document of one file: its content, or the problem that kept it from being read."""

    source: str  # FILE or FILE#N (N counts documents from 1, shown when a file has several)
    content: Any = None
    problem: Problem | None = None


@dataclass
class Checked:
    """The outcome of reading and validating every document under some paths."""

    valid: list[tuple[Document, Validated]] = field(default_factory=list)
    problems: list[tuple[str, Problem]] = field(default_factory=list)
    warnings: list[tuple[str, Problem]] = field(default_factory=list)


def check_paths(paths: Iterable[str | Path], *, now: datetime) -> Checked:
    """Read and validate every Schedule under `paths` (shared by validate, apply, dev)."""
    checked = Checked()
    seen: dict[tuple[str, str], str] = {}  # (namespace, name) -> the document naming it first
    files = manifest_files(paths)
    for path in files:
        for document in read_documents(path):
            if document.problem is not None:
                checked.problems.append((document.source, document.problem))
                continue
            try:
                result = validate_manifest(document.content, now=now)
            except SpecError as exc:
                checked.problems += [(document.source, p) for p in exc.problems]
                continue
            meta = result.manifest.metadata
            first = seen.setdefault((meta.namespace, meta.name), document.source)
            if first != document.source:
                message = f"Schedule {meta.namespace}/{meta.name} is also defined in {first}"
                checked.problems.append((document.source, Problem("metadata.name", message)))
                continue
            checked.valid.append((document, result))
            checked.warnings += [(document.source, w) for w in result.warnings]
    return checked


class _LimitError(yaml.composer.ComposerError):
    """A document refused for its shape (depth, aliases), not for its syntax."""


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing duplicate keys, deep nesting and many aliases."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._aliases = 0

    def compose_document(self) -> yaml.Node | None:
        self._aliases = 0
        return super().compose_document()

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        mark = event.start_mark if isinstance(event.start_mark, yaml.Mark) else None
        if isinstance(event, yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                problem = f"more than {MAX_ALIASES} aliases (*name) in one document"
                raise _LimitError(None, None, problem, mark)
        self._depth += 1
        try:
            if self._depth > _MAX_NESTING:
                problem = f"nested deeper than {_MAX_NESTING} levels"
                raise _LimitError(None, None, problem, mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


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
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            limit = f"{MAX_FILE_BYTES // (1024 * 1024)} MiB"
            problem = Problem("", f"is {size:,} bytes; a manifest file may be at most {limit}")
            return [Document(str(path), problem=problem)]
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
    except (ValueError, OverflowError) as exc:  # an unquoted timestamp such as 2026-02-30
        error = Problem("", f"YAML value cannot be read: {exc} (quote dates and times)")
    several = len([d for d in raw if d is not None]) > 1 or (error is not None and bool(raw))
    for index, content in enumerate(raw, start=1):
        if content is None or _other_group(content):
            continue
        yield Document(f"{source}#{index}" if several else source, content=content)
    if error is not None:
        yield Document(f"{source}#{len(raw) + 1}" if raw else source, problem=error)


def _other_group(content: object) -> bool:
    api_version = content.get("apiVersion") if isinstance(content, dict) else None
    return isinstance(api_version, str) and api_version.split("/")[0] != _GROUP


def _yaml_message(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    if isinstance(exc, _LimitError):
        return f"YAML refused at {where}{problem}"
    return f"YAML syntax error at {where}{problem}"


def _reason(exc: Exception) -> str:
    if isinstance(exc, FileNotFoundError):
        return "no such file"
    if isinstance(exc, IsADirectoryError):
        return "is a directory"
    if isinstance(exc, UnicodeDecodeError):
        return "not UTF-8 text"
    return getattr(exc, "strerror", None) or str(exc)
