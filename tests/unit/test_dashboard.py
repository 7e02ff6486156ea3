"""The Grafana dashboard in the chart asks only for metrics beatkeeper really exports."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from beatkeeper.observability import metrics

DASHBOARD = Path(__file__).parents[2] / "charts/beatkeeper/dashboards/beatkeeper.json"
SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}


def exported() -> set[str]:
    """Every sample name the metrics module's collectors expose."""
    names = set()
    for collector in vars(metrics).values():
        if isinstance(collector, Counter | Gauge | Histogram):
            for family in collector.describe():
                names |= {family.name + suffix for suffix in SUFFIXES[family.type]}
    return names


def expressions(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["expr"]] if isinstance(node.get("expr"), str) else []
        return found + [e for value in node.values() for e in expressions(value)]
    if isinstance(node, list):
        return [e for item in node for e in expressions(item)]
    return []


def test_every_metric_in_the_dashboard_is_exported() -> None:
    queried = {
        name
        for expr in expressions(json.loads(DASHBOARD.read_text()))
        for name in re.findall(r"\bbeatkeeper_[a-z_]+", expr)
    }
    assert queried
    assert queried <= exported(), queried - exported()


def test_every_exported_metric_is_on_the_dashboard() -> None:
    text = DASHBOARD.read_text()
    families = {re.sub(r"_(total|bucket|sum|count)$", "", name) for name in exported()}
    assert {family for family in families if family not in text} == set()


def test_panels_use_the_datasource_input() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert [i["name"] for i in dashboard["__inputs"]] == ["DS_PROMETHEUS"]
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}"
        assert all(t["datasource"]["uid"] == "${DS_PROMETHEUS}" for t in panel["targets"])


def test_the_datasource_is_a_variable_too_for_a_provisioned_dashboard() -> None:
    # Grafana's sidecar provisions the file as is: no import step fills ${DS_PROMETHEUS}.
    variables = json.loads(DASHBOARD.read_text())["templating"]["list"]
    [variable] = [v for v in variables if v["name"] == "DS_PROMETHEUS"]
    assert (variable["type"], variable["query"]) == ("datasource", "prometheus")
