"""Check a manifest's raw values before anything recurses into them or stores them.

A document reaches `validate_manifest` as plain Python values: from YAML (where anchors and
aliases can make one value appear millions of times), from the Kubernetes API (JSON of
any depth) or from a test. This walk runs first, without recursion and within a budget of
``MAX_VALUES`` values, so that pydantic, the JSON encoder and PostgreSQL only ever see a
document that is shallow enough, small enough, keyed by strings and free of text
PostgreSQL cannot store (NUL, lone surrogates). Paths in messages escape anything that is
not plain text, so a key cannot print a fake line. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from beatkeeper.problems import Problem

#: How deeply values may nest in a manifest (args and kwargs included).
MAX_DEPTH = 64
#: Values one manifest may hold, counting each use of a YAML alias again.
MAX_VALUES = 100_000
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:/-]*")
_UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")


def path_segment(key: object, *, first: bool = False) -> str:
    """``.name`` for a plain key, ``['odd key']`` (escaped as Python does) for any other."""
    if isinstance(key, int) and not isinstance(key, bool):
        return f"[{key}]"
    if isinstance(key, str) and _PLAIN_KEY.fullmatch(key):
        return key if first else f".{key}"
    return f"[{key!r}]"


def value_problems(document: Mapping[str, Any]) -> list[Problem]:
    """Depth, size, key and text problems of a document, at most one per kind."""
    problems: dict[str, Problem] = {}
    for path, problem in _walk(document):
        problems.setdefault(problem, Problem(path, problem))
        if problem.startswith(("is nested", "the document holds")):
            break  # the rest of the walk would be what the limit is there to avoid
    return list(problems.values())


def _walk(document: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    stack: list[tuple[str, object, int]] = [("", document, 0)]
    seen = 0
    while stack:
        path, value, depth = stack.pop()
        seen += 1
        if seen > MAX_VALUES:
            yield (
                "",
                f"the document holds more than {MAX_VALUES:,} values "
                "(YAML aliases count each time)",
            )
            return
        if depth > MAX_DEPTH:
            yield path, f"is nested deeper than {MAX_DEPTH} levels"
            return
        if isinstance(value, str):
            if found := _UNSTORABLE.search(value):
                yield path, _unstorable(found.group())
        elif isinstance(value, Mapping):
            for key, item in reversed(list(value.items())):
                if not isinstance(key, str):
                    yield path, f"keys must be strings, got {key!r} (quote it)"
                    continue
                if found := _UNSTORABLE.search(key):
                    yield path + path_segment(key, first=not path), _unstorable(found.group())
                    continue
                stack.append((path + path_segment(key, first=not path), item, depth + 1))
        elif isinstance(value, list | tuple):
            stack.extend(
                (f"{path}[{index}]", item, depth + 1)
                for index, item in reversed(list(enumerate(value)))
            )


def _unstorable(character: str) -> str:
    if character == "\x00":
        return "contains a NUL character (\\x00), which cannot be stored"
    return f"contains a lone surrogate ({character!r}), which is not valid Unicode text"
