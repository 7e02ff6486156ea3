"""A Schedule named on a command line: ``NAMESPACE/NAME``, or ``NAME`` in the default namespace.

One reading for every command that takes a name (`apply`'s manifests default to the same
namespace), so `beatkeeper trigger nightly` means what `beatkeeper delete nightly` does.
Pure: it checks the shape only; whether such a Schedule exists is the store's business.
"""

from __future__ import annotations

__all__ = ["DEFAULT_NAMESPACE", "split_name"]

#: Where a Schedule lives when its manifest or its name gives no namespace (as kubectl).
DEFAULT_NAMESPACE = "default"


def split_name(text: str, *, default_namespace: str = DEFAULT_NAMESPACE) -> tuple[str, str]:
    """``(namespace, name)`` of ``NAMESPACE/NAME``, or of a bare ``NAME``.

    ``ValueError`` (saying how to write it) for an empty namespace or name, or for more
    than one slash: neither a namespace nor a name can hold one.
    """
    cleaned = text.strip()
    namespace, slash, name = cleaned.rpartition("/")
    if not slash:
        namespace = default_namespace
    if not namespace or not name or "/" in namespace:
        raise ValueError(
            f"{text!r}: write NAMESPACE/NAME, or NAME for namespace {default_namespace}"
        )
    return namespace, name
