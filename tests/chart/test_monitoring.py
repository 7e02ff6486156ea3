"""The chart's opt-in monitoring objects: the PrometheusRule and the Grafana dashboard.

Every alert's PromQL is parsed with a real PromQL parser and may only ask for metrics
beatkeeper exports (``beatkeeper.observability.metrics``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import promql_parser
import pytest
from chart_render import CHART, NAMESPACE, Object, parse, template
from prometheus_client import Counter, Gauge, Histogram

from beatkeeper.observability import metrics

DASHBOARD = CHART / "dashboards" / "beatkeeper.json"
SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}


def exported() -> set[str]:
    """Every sample name the metrics module's collectors expose."""
    return {
        family.name + suffix
        for collector in vars(metrics).values()
        if isinstance(collector, Counter | Gauge | Histogram)
        for family in collector.describe()
        for suffix in SUFFIXES[family.type]
    }


def render(helm: Path, *sets: str) -> list[Object]:
    result = template(helm, *(arg for value in sets for arg in ("--set", value)))
    assert result.returncode == 0, result.stderr
    return parse(result.stdout)


def selected_metrics(node: Any) -> set[str]:
    """Names of every metric an expression selects, walking the parsed tree."""
    if isinstance(node, promql_parser.VectorSelector):
        return {node.name} if node.name else set()
    found: set[str] = set()
    for attribute in ("lhs", "rhs", "expr", "param", "vector_selector", "args"):
        child = getattr(node, attribute, None)
        if isinstance(child, list | tuple):
            found |= {name for item in child for name in selected_metrics(item)}
        elif child is not None:
            found |= selected_metrics(child)
    return found


@pytest.fixture(scope="module")
def rules(helm: Path) -> list[dict[str, Any]]:
    objects = render(helm, "metrics.prometheusRule.enabled=true")
    [rule] = [obj for obj in objects if obj["kind"] == "PrometheusRule"]
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["namespace"] == NAMESPACE
    [group] = rule["spec"]["groups"]
    rules: list[dict[str, Any]] = group["rules"]
    return rules


def test_monitoring_objects_are_opt_in(helm: Path) -> None:
    kinds = {obj["kind"] for obj in render(helm)}
    assert "PrometheusRule" not in kinds
    assert not [
        o for o in render(helm) if o["kind"] == "ConfigMap" and "dashboard" in o["metadata"]["name"]
    ]


def test_the_rules_cover_what_an_operator_pages_on(rules: list[dict[str, Any]]) -> None:
    assert [rule["alert"] for rule in rules] == [
        "BeatkeeperRunsDead",
        "BeatkeeperRunsMissed",
        "BeatkeeperBeatLagging",
        "BeatkeeperNoBeat",
        "BeatkeeperQueueNotConsumed",
    ]
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert {"summary", "description"} <= set(rule["annotations"])


def test_every_expression_parses_and_asks_only_for_exported_metrics(
    rules: list[dict[str, Any]],
) -> None:
    names = exported()
    for rule in rules:
        asked = selected_metrics(promql_parser.parse(rule["expr"]))
        assert asked, rule["alert"]
        assert asked <= names, (rule["alert"], asked - names)
        assert f'namespace="{NAMESPACE}"' in rule["expr"]  # this release's targets only


def test_rule_labels_and_thresholds_come_from_values(helm: Path) -> None:
    objects = render(
        helm,
        "metrics.prometheusRule.enabled=true",
        "metrics.prometheusRule.labels.release=kube-prometheus-stack",
        "metrics.prometheusRule.lagSeconds=120",
        "metrics.prometheusRule.severity.noBeat=page",
    )
    [rule] = [obj for obj in objects if obj["kind"] == "PrometheusRule"]
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    by_name = {r["alert"]: r for r in rule["spec"]["groups"][0]["rules"]}
    assert by_name["BeatkeeperBeatLagging"]["expr"].endswith("> 120")
    assert by_name["BeatkeeperNoBeat"]["labels"]["severity"] == "page"


def dashboards(objects: list[Object]) -> list[Object]:
    return [
        o
        for o in objects
        if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-dashboard")
    ]


def test_the_dashboard_configmap_holds_exactly_the_dashboard_file(helm: Path) -> None:
    [configmap] = dashboards(render(helm, "metrics.grafanaDashboard.enabled=true"))
    assert configmap["metadata"]["namespace"] == NAMESPACE
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"  # the sidecar's default
    assert configmap["data"] == {"beatkeeper.json": DASHBOARD.read_text()}


def test_the_dashboard_goes_where_grafana_looks(helm: Path) -> None:
    [configmap] = dashboards(
        render(
            helm,
            "metrics.grafanaDashboard.enabled=true",
            "metrics.grafanaDashboard.namespace=monitoring",
            "metrics.grafanaDashboard.labels.team=platform",
            "metrics.grafanaDashboard.annotations.grafana_folder=Beatkeeper",
        )
    )
    assert configmap["metadata"]["namespace"] == "monitoring"
    assert configmap["metadata"]["labels"]["team"] == "platform"
    assert configmap["metadata"]["annotations"] == {"grafana_folder": "Beatkeeper"}
