"""The chart's README documents every value, from values.yaml's own helm-docs comments."""

from __future__ import annotations

import re

import yaml
from chart_readme import README, comments, readme_table, rows, table
from chart_render import CHART

VALUES_TEXT = (CHART / "values.yaml").read_text()


def test_readme_values_table_is_generated_from_values_yaml() -> None:
    assert readme_table(README.read_text()) == table(VALUES_TEXT), (
        "charts/beatkeeper/README.md is stale: run .venv/bin/python tests/chart/chart_readme.py"
    )


def test_every_top_level_value_is_in_the_readme() -> None:
    documented = {key.split(".")[0] for key, *_ in rows(VALUES_TEXT)}
    assert documented == set(yaml.safe_load(VALUES_TEXT))
    listed = set(re.findall(r"^\| `([A-Za-z]+)[.`]", README.read_text(), re.MULTILINE))
    assert listed == documented


def test_every_value_has_a_helm_docs_comment() -> None:
    undocumented = [key for key, _, _, description in rows(VALUES_TEXT) if not description]
    assert not undocumented, f"add a `# --` comment in values.yaml for {undocumented}"
    assert len(comments(VALUES_TEXT)) > 150
