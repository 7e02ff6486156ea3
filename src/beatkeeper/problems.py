"""What a user did wrong, said plainly: a dotted field path and a message.

Every component reports bad input through these, so `beatkeeper validate`, the operator's
`InvalidSpec` condition and `beatkeeper apply` print the same words. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with one field, e.g. ``spec.retry.maxAttempts: must be at least 1``."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class SpecError(ValueError):
    """A Schedule that cannot be accepted; carries every problem found, not just the first."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))
