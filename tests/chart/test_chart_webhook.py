"""The validating webhook in the chart: what it matches, how it is reached, its certificates."""

from __future__ import annotations

from pathlib import Path

import pytest
from beatkeeper_operator.admission import HANDLER_ID
from beatkeeper_operator.webhook import webhook_config_from_env
from chart_render import Object, Rendering, annotations_of, env_of, parse, template

CONFIGURATION = "beatkeeper-bk-beatkeeper-webhook"
SERVICE_HOST = "bk-beatkeeper-webhook.beatkeeper.svc"


def _operator(rendering: Rendering) -> Object:
    pod = rendering.get("Deployment", "operator")["spec"]["template"]["spec"]
    return {"pod": pod, "container": pod["containers"][0]}


def _webhook(rendering: Rendering) -> Object:
    (configuration,) = rendering.of_kind("ValidatingWebhookConfiguration")
    (hook,) = configuration["webhooks"]
    return dict(hook)


def test_only_schedule_creates_and_updates_go_through_the_webhook(
    renderings: dict[str, Rendering],
) -> None:
    hook = _webhook(renderings["default"])
    assert hook["rules"] == [
        {
            "apiGroups": ["beatkeeper.io"],
            "apiVersions": ["v1alpha1"],
            "resources": ["schedules"],
            "operations": ["CREATE", "UPDATE"],
            "scope": "Namespaced",
        }
    ]
    assert hook["failurePolicy"] == "Ignore"
    assert hook["timeoutSeconds"] == 5
    assert hook["sideEffects"] == "None"
    assert hook["admissionReviewVersions"] == ["v1"]
    assert "namespaceSelector" not in hook


def test_the_api_server_reaches_the_operators_webhook_port(
    renderings: dict[str, Rendering],
) -> None:
    rendering = renderings["default"]
    service_ref = _webhook(rendering)["clientConfig"]["service"]
    assert service_ref == {
        "name": "bk-beatkeeper-webhook",
        "namespace": "beatkeeper",
        "path": "/validate-schedule",
        "port": 9443,
    }
    service = rendering.get("Service", "webhook")
    assert service["spec"]["ports"] == [
        # The operator's own port, not 443: nothing in between remaps it.
        {"name": "webhook", "port": 9443, "targetPort": "webhook", "protocol": "TCP"}
    ]
    operator = rendering.get("Deployment", "operator")
    labels = operator["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    ports = {
        port["name"]: port["containerPort"] for port in _operator(rendering)["container"]["ports"]
    }
    assert ports["webhook"] == 9443


def test_without_cert_manager_the_operator_issues_certificates_into_memory(
    renderings: dict[str, Rendering],
) -> None:
    rendering = renderings["default"]
    operator = _operator(rendering)
    env = env_of(operator["container"])
    assert env["BEATKEEPER_WEBHOOK_PORT"]["value"] == "9443"
    assert env["BEATKEEPER_WEBHOOK_CERTIFICATES"]["value"] == "self-signed"
    assert env["BEATKEEPER_WEBHOOK_CONFIGURATION"]["value"] == CONFIGURATION
    assert SERVICE_HOST in env["BEATKEEPER_WEBHOOK_HOSTS"]["value"].split(",")
    (configuration,) = rendering.of_kind("ValidatingWebhookConfiguration")
    assert configuration["metadata"]["name"] == CONFIGURATION
    assert "caBundle" not in _webhook(rendering)["clientConfig"]
    volumes = {volume["name"]: volume for volume in operator["pod"]["volumes"]}
    assert volumes["webhook-certificates"]["emptyDir"]["medium"] == "Memory"
    mounts = {mount["name"]: mount for mount in operator["container"]["volumeMounts"]}
    assert (
        mounts["webhook-certificates"]["mountPath"] == env["BEATKEEPER_WEBHOOK_CERT_DIR"]["value"]
    )
    assert rendering.of_kind("Certificate") == []


def test_with_cert_manager_the_ca_is_injected_and_the_secret_mounted(
    renderings: dict[str, Rendering],
) -> None:
    rendering = renderings["webhook-cert-manager-values"]
    (certificate,) = rendering.of_kind("Certificate")
    assert rendering.of_kind("Issuer") == []  # the ClusterIssuer given is used
    assert certificate["spec"]["issuerRef"] == {
        "name": "platform-ca",
        "kind": "ClusterIssuer",
        "group": "cert-manager.io",
    }
    assert SERVICE_HOST in certificate["spec"]["dnsNames"]
    (configuration,) = rendering.of_kind("ValidatingWebhookConfiguration")
    assert annotations_of(configuration)["cert-manager.io/inject-ca-from"] == (
        f"beatkeeper/{certificate['metadata']['name']}"
    )
    operator = _operator(rendering)
    env = env_of(operator["container"])
    assert env["BEATKEEPER_WEBHOOK_CERTIFICATES"]["value"] == "files"
    assert "BEATKEEPER_WEBHOOK_CONFIGURATION" not in env
    volumes = {volume["name"]: volume for volume in operator["pod"]["volumes"]}
    secret = certificate["spec"]["secretName"]
    assert volumes["webhook-certificates"]["secret"] == {"secretName": secret}
    hook = _webhook(rendering)
    assert (hook["failurePolicy"], hook["timeoutSeconds"]) == ("Fail", 10)


def test_cert_manager_without_an_issuer_gets_a_self_signed_one(helm: Path) -> None:
    result = template(helm, "--set", "webhook.certManager.enabled=true")
    assert result.returncode == 0, result.stderr
    objects = parse(result.stdout)
    (issuer,) = [obj for obj in objects if obj["kind"] == "Issuer"]
    (certificate,) = [obj for obj in objects if obj["kind"] == "Certificate"]
    assert issuer["spec"] == {"selfSigned": {}}
    assert certificate["spec"]["issuerRef"]["name"] == issuer["metadata"]["name"]


def test_a_namespaced_operator_checks_only_its_namespaces(
    renderings: dict[str, Rendering],
) -> None:
    hook = _webhook(renderings["namespaced-operator-values"])
    assert hook["namespaceSelector"] == {
        "matchExpressions": [
            {
                "key": "kubernetes.io/metadata.name",
                "operator": "In",
                "values": ["team-a", "team-b"],
            }
        ]
    }


def test_the_webhook_can_be_left_out(helm: Path) -> None:
    result = template(helm, "--set", "webhook.enabled=false")
    assert result.returncode == 0, result.stderr
    objects = parse(result.stdout)
    kinds = {obj["kind"] for obj in objects}
    assert "ValidatingWebhookConfiguration" not in kinds
    assert not [obj for obj in objects if obj["metadata"]["name"].endswith("-webhook")]
    (operator,) = [
        obj
        for obj in objects
        if obj["kind"] == "Deployment" and obj["metadata"]["name"].endswith("-operator")
    ]
    container = operator["spec"]["template"]["spec"]["containers"][0]
    assert not [name for name in env_of(container) if name.startswith("BEATKEEPER_WEBHOOK_")]
    assert "webhook" not in {port["name"] for port in container["ports"]}


@pytest.mark.parametrize(
    "setting",
    ["webhook.failurePolicy=Sometimes", "webhook.timeoutSeconds=31", "webhook.port=443"],
)
def test_the_schema_refuses_a_bad_webhook_setting(helm: Path, setting: str) -> None:
    result = template(helm, "--set", setting)
    assert result.returncode != 0
    assert "webhook" in result.stderr


@pytest.mark.parametrize("scenario", ["default", "webhook-cert-manager-values"])
def test_the_operator_reads_what_the_chart_configures(
    renderings: dict[str, Rendering], scenario: str
) -> None:
    rendering = renderings[scenario]
    env = env_of(_operator(rendering)["container"])
    config = webhook_config_from_env(
        {name: item["value"] for name, item in env.items() if "value" in item}
    )
    assert config is not None
    assert _webhook(rendering)["clientConfig"]["service"]["path"] == f"/{HANDLER_ID}"
    ports = {p["name"]: p["containerPort"] for p in _operator(rendering)["container"]["ports"]}
    assert config.port == ports["webhook"]
    assert config.hosts[0] == SERVICE_HOST
    if scenario == "default":
        assert (config.certificates, config.configuration) == ("self-signed", CONFIGURATION)
    else:
        assert (config.certificates, config.configuration) == ("files", "")


def test_a_namespace_selector_given_wins(helm: Path) -> None:
    result = template(
        helm,
        "--set", "operator.namespaces={team-a}",
        "--set", "webhook.namespaceSelector.matchLabels.beatkeeper\\.io/schedules=checked",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (configuration,) = [
        obj for obj in parse(result.stdout) if obj["kind"] == "ValidatingWebhookConfiguration"
    ]
    assert configuration["webhooks"][0]["namespaceSelector"] == {
        "matchLabels": {"beatkeeper.io/schedules": "checked"}
    }
