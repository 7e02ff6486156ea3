"""With networkPolicy.enabled, every pod gets only the traffic its role needs."""

from __future__ import annotations

from pathlib import Path

import pytest
from chart_render import Object, Rendering, name_of, parse, template

DNS_PORTS = [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]
RELEASE_PODS = {"app.kubernetes.io/name": "beatkeeper", "app.kubernetes.io/instance": "bk"}


@pytest.fixture
def policies(renderings: dict[str, Rendering]) -> Rendering:
    return renderings["network-policies-values"]


def _policy(rendering: Rendering, component: str) -> Object:
    return rendering.get("NetworkPolicy", component)


def _egress_ports(policy: Object) -> list[list[dict[str, object]]]:
    return [rule.get("ports", []) for rule in policy["spec"].get("egress", [])]


def test_policies_are_off_by_default(renderings: dict[str, Rendering]) -> None:
    assert renderings["default"].of_kind("NetworkPolicy") == []


def test_every_pod_is_selected_by_a_policy(policies: Rendering) -> None:
    selectors = [p["spec"]["podSelector"]["matchLabels"] for p in policies.of_kind("NetworkPolicy")]
    for owner, _pod in policies.pod_specs():
        template = owner["spec"]["template"] if owner["kind"] != "Pod" else owner
        labels = template["metadata"]["labels"]
        assert any(s.items() <= labels.items() for s in selectors), name_of(owner)


def test_every_restricted_pod_may_resolve_names(policies: Rendering) -> None:
    for policy in policies.of_kind("NetworkPolicy"):
        if "Egress" in policy["spec"]["policyTypes"] and policy["spec"].get("egress"):
            assert DNS_PORTS in _egress_ports(policy), name_of(policy)


def test_only_the_operator_reaches_the_api_server(policies: Rendering) -> None:
    for policy in policies.of_kind("NetworkPolicy"):
        api_rules = [
            rule
            for rule in policy["spec"].get("egress", [])
            if {"port": 6443, "protocol": "TCP"} in rule.get("ports", [])
        ]
        if name_of(policy).endswith("-operator"):
            (rule,) = api_rules
            assert rule["to"] == [
                {"ipBlock": {"cidr": "10.96.0.1/32"}},
                {"ipBlock": {"cidr": "172.18.0.0/16"}},
            ]
        else:
            assert api_rules == [], name_of(policy)


@pytest.mark.parametrize(("component", "port"), [("postgresql", "postgresql"), ("redis", "redis")])
def test_database_and_redis_accept_only_this_releases_pods(
    policies: Rendering, component: str, port: str
) -> None:
    policy = _policy(policies, component)
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert "egress" not in policy["spec"], "they never connect out"
    (rule,) = policy["spec"]["ingress"]
    assert rule["ports"] == [{"port": port, "protocol": "TCP"}]
    assert rule["from"][0] == {"podSelector": {"matchLabels": RELEASE_PODS}}
    if component == "redis":  # KEDA reads queue lengths (keda is on in this scenario)
        assert rule["from"][1] == {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "keda"}}
        }
    else:
        assert len(rule["from"]) == 1


def test_flower_accepts_only_the_ingress_controller(policies: Rendering) -> None:
    (rule,) = _policy(policies, "flower")["spec"]["ingress"]
    assert rule["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}
    ]
    assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]


def test_metrics_only_from_the_monitoring_namespace(policies: Rendering) -> None:
    for component in ("operator", "beat", "worker"):
        rule = _policy(policies, component)["spec"]["ingress"][0]
        assert rule["ports"] == [{"port": "metrics", "protocol": "TCP"}]
        selector = rule["from"][0]["namespaceSelector"]["matchLabels"]
        assert selector == {"kubernetes.io/metadata.name": "monitoring"}


def test_the_api_server_reaches_the_webhook_port_only(policies: Rendering) -> None:
    metrics, webhook = _policy(policies, "operator")["spec"]["ingress"]
    assert metrics["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    assert webhook == {
        "from": [{"ipBlock": {"cidr": "10.96.0.1/32"}}, {"ipBlock": {"cidr": "172.18.0.0/16"}}],
        "ports": [{"port": "webhook", "protocol": "TCP"}],
    }


def test_without_api_server_addresses_the_webhook_port_is_open_to_any(helm: Path) -> None:
    result = template(helm, "--set", "networkPolicy.enabled=true")
    assert result.returncode == 0, result.stderr
    (policy,) = [
        obj
        for obj in parse(result.stdout)
        if obj["kind"] == "NetworkPolicy" and name_of(obj).endswith("-operator")
    ]
    webhook = policy["spec"]["ingress"][1]
    assert webhook == {"ports": [{"port": "webhook", "protocol": "TCP"}]}


def test_migration_and_test_pods_accept_nothing(policies: Rendering) -> None:
    for component in ("migrate", "test"):
        policy = _policy(policies, component)
        assert policy["spec"]["ingress"] == []
        ports = [port for rule_ports in _egress_ports(policy) for port in rule_ports]
        assert {"port": 5432, "protocol": "TCP"} in ports


def test_worker_egress_stays_open_unless_restricted(helm: Path, policies: Rendering) -> None:
    # Workers run user tasks, which may call anything; restrictWorkerEgress closes it.
    assert "Egress" in _policy(policies, "worker")["spec"]["policyTypes"]
    result = template(helm, "--set", "networkPolicy.enabled=true")
    assert result.returncode == 0, result.stderr
    (worker,) = [
        obj
        for obj in parse(result.stdout)
        if obj["kind"] == "NetworkPolicy" and name_of(obj).endswith("-worker")
    ]
    assert worker["spec"]["policyTypes"] == ["Ingress"]
