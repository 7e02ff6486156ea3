"""Fixtures of the dev-stack tests; the code lives in dev_support (importable by the tests)."""

from dev_support import dev_stack

__all__ = ["dev_stack"]
