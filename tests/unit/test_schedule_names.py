"""`NAMESPACE/NAME` on a command line: one reading for every command."""

from __future__ import annotations

import pytest

from beatkeeper.spec import DEFAULT_NAMESPACE, split_name


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("billing/nightly", ("billing", "nightly")),
        ("nightly", (DEFAULT_NAMESPACE, "nightly")),
        ("  team-a/report.v2 ", ("team-a", "report.v2")),
    ],
)
def test_a_name_is_namespace_slash_name_or_a_bare_name_in_the_default_namespace(
    text: str, expected: tuple[str, str]
) -> None:
    assert split_name(text) == expected


def test_the_default_namespace_can_be_chosen() -> None:
    assert split_name("nightly", default_namespace="ops") == ("ops", "nightly")


@pytest.mark.parametrize("text", ["", "/", "billing/", "/nightly", "a/b/c"])
def test_an_empty_part_or_a_second_slash_says_how_to_write_it(text: str) -> None:
    with pytest.raises(ValueError, match="write NAMESPACE/NAME, or NAME for namespace default"):
        split_name(text)
