"""values.schema.json rejects mistakes at install time, with helm naming the key."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from chart_render import CHART, SCENARIO_FILES, parse, run_helm, template

SCHEMA = json.loads((CHART / "values.schema.json").read_text())
# Subtrees that are Kubernetes API objects passed through to the API server, which
# validates them (affinity terms, tolerations, env vars...).
PASSTHROUGH = "#/definitions/k8sObject"
# Helm's own shared values, injected into every subchart: this chart reads none of them.
GLOBAL = "#/properties/global"

REJECTED = {
    "typo in a key": (["--set", "worker.replicsa=3"], ["/worker", "replicsa"]),
    "typo at the top level": (["--set", "flowr.enabled=false"], ["flowr"]),
    "wrong type": (["--set", "worker.replicas=two"], ["/worker/replicas", "integer"]),
    "wrong type for a boolean": (["--set-string", "crds.keep=yes"], ["/crds/keep", "boolean"]),
    "unknown enum value": (["--set", "flower.auth.mode=open"], ["/flower/auth/mode"]),
    "both HPA and KEDA": (
        ["--set", "worker.autoscaling.enabled=true", "--set", "worker.keda.enabled=true"],
        ["/worker/keda/enabled"],
    ),
    "no database configured": (
        ["--set", "postgresql.enabled=false"],
        ["/externalDatabase/existingSecret"],
    ),
    "no redis configured": (["--set", "redis.enabled=false"], ["/externalRedis/existingSecret"]),
    "flower without auth and writable": (
        ["--set", "flower.auth.mode=none"],
        ["/flower/readOnly"],
    ),
    "oauth without its secret": (
        ["--set", "flower.auth.mode=oauth"],
        ["/flower/auth/oauth/existingSecret"],
    ),
    "keda on an external redis without an address": (
        [
            "--set", "worker.keda.enabled=true",
            "--set", "redis.enabled=false",
            "--set", "externalRedis.existingSecret=broker",
        ],
        ["/worker/keda/redis/address"],
    ),
    "oauth without allowed e-mails": (
        [
            "--set", "flower.auth.mode=oauth",
            "--set", "flower.auth.oauth.existingSecret=flower-oauth",
            "--set", "flower.auth.oauth.redirectUri=https://ops.example.com/flower/login",
        ],
        ["/flower/auth/oauth/emails"],
    ),
    "a bad namespace name": (["--set", "operator.namespaces={Team_A}"], ["/operator/namespaces/0"]),
    "a bad schema name": (["--set", "config.dbSchema=Beat-Keeper"], ["/config/dbSchema"]),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(REJECTED))
def test_schema_rejects(helm: Path, case: str) -> None:
    args, mentions = REJECTED[case]
    result = template(helm, *args)
    assert result.returncode != 0, f"{case}: accepted"
    assert "values don't meet the specifications of the schema" in result.stderr, result.stderr
    for mention in mentions:
        assert mention in result.stderr, result.stderr


# Without the schema (helm --skip-schema-validation), the templates still refuse.
FAILED_BY_TEMPLATE = {
    "both HPA and KEDA": (
        ["--set", "worker.autoscaling.enabled=true", "--set", "worker.keda.enabled=true"],
        "worker.autoscaling.enabled and worker.keda.enabled are mutually exclusive",
    ),
    "no database configured": (["--set", "postgresql.enabled=false"], "no database configured"),
    "no redis configured": (["--set", "redis.enabled=false"], "no Redis configured"),
    "flower without auth and writable": (
        ["--set", "flower.auth.mode=none"],
        "flower.auth.mode=none needs flower.readOnly=true",
    ),
    "oauth without allowed e-mails": (
        [
            "--set", "flower.auth.mode=oauth",
            "--set", "flower.auth.oauth.existingSecret=flower-oauth",
            "--set", "flower.auth.oauth.emails= ",
        ],
        "flower.auth.mode=oauth needs flower.auth.oauth.emails",
    ),
    "network policies without a way to an external database": (
        [
            "--set", "networkPolicy.enabled=true",
            "--set", "postgresql.enabled=false",
            "--set", "externalDatabase.existingSecret=db",
        ],
        "networkPolicy.extraEgress",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(FAILED_BY_TEMPLATE))
def test_templates_refuse_what_the_schema_would(helm: Path, case: str) -> None:
    args, message = FAILED_BY_TEMPLATE[case]
    result = template(helm, "--skip-schema-validation", *args)
    assert result.returncode != 0, f"{case}: accepted"
    assert message in result.stderr, result.stderr


def test_flower_without_auth_is_accepted_only_read_only(helm: Path) -> None:
    result = template(helm, "--set", "flower.auth.mode=none", "--set", "flower.readOnly=true")
    assert result.returncode == 0, result.stderr
    assert "FLOWER_BASIC_AUTH" not in result.stdout
    assert "--read_only=true" in result.stdout


def _object_nodes(node: Any, path: str) -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        if node.get("type") == "object" and path not in {PASSTHROUGH, GLOBAL}:
            found.append((path, node))
        for key, child in node.items():
            found.extend(_object_nodes(child, f"{path}/{key}"))
    elif isinstance(node, list):
        for index, child in enumerate(node):
            found.extend(_object_nodes(child, f"{path}/{index}"))
    return found


def test_every_object_level_of_the_schema_closes_its_keys() -> None:
    nodes = _object_nodes(SCHEMA, "#")
    assert len(nodes) > 50
    for path, node in nodes:
        closed = node.get("additionalProperties")
        # false, or a schema every extra key must meet (maps of labels, quantities...).
        assert closed is False or isinstance(closed, dict), f"{path} accepts any key"


def test_every_values_key_is_described_by_the_schema() -> None:
    validator = jsonschema.Draft7Validator(SCHEMA)
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    assert not list(validator.iter_errors(defaults))
    for path in SCENARIO_FILES.values():
        if path is not None:
            merged = _merge(defaults, yaml.safe_load(path.read_text()))
            errors = [error.message for error in validator.iter_errors(merged)]
            assert not errors, f"{path.name}: {errors}"


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merged[key] = _merge(base[key], value)
        else:
            merged[key] = value
    return merged


def test_global_values_are_accepted(helm: Path) -> None:
    result = template(helm, "--set", "global.imageRegistry=registry.example.com")
    assert result.returncode == 0, result.stderr


def test_the_chart_renders_as_a_subchart(helm: Path, tmp_path: Path) -> None:
    # A parent chart's values always give its subcharts a `global` key.
    parent = tmp_path / "platform"
    (parent / "charts").mkdir(parents=True)
    shutil.copytree(CHART, parent / "charts" / "beatkeeper")
    (parent / "Chart.yaml").write_text(
        "apiVersion: v2\nname: platform\nversion: 1.0.0\n"
        "dependencies:\n  - name: beatkeeper\n    version: '*'\n"
    )
    (parent / "values.yaml").write_text(
        "global: {environment: staging}\nbeatkeeper: {beat: {replicas: 3}}\n"
    )
    result = run_helm(helm, "template", "bk", str(parent), "--namespace", "beatkeeper")
    assert result.returncode == 0, result.stderr
    beats = [
        obj
        for obj in parse(result.stdout)
        if obj["kind"] == "Deployment" and obj["metadata"]["name"].endswith("-beat")
    ]
    assert [beat["spec"]["replicas"] for beat in beats] == [3]
