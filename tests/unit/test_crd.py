"""The CRD is generated from the spec models and committed as generated."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from beatkeeper.cli.crd import crd_yaml
from beatkeeper.crd import schedule_crd

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "manifests" / "crds" / "schedules.beatkeeper.io.yaml"


def schema() -> dict[str, Any]:
    version = schedule_crd()["spec"]["versions"][0]
    return version["schema"]["openAPIV3Schema"]  # type: ignore[no-any-return]


def walk(node: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found = [(path, node)]
    for name, child in node.get("properties", {}).items():
        found += walk(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict) and node["items"].get("properties"):
        found += walk(node["items"], f"{path}[]")
    return found


def test_committed_crd_equals_generated() -> None:
    assert COMMITTED.read_text() == crd_yaml(), "run: beatkeeper crd > " + str(
        COMMITTED.relative_to(ROOT)
    )


def test_every_spec_and_status_field_has_a_description() -> None:
    missing = [p for p, node in walk(schema()) if p.count(".") > 1 and not node.get("description")]
    assert missing == []


def test_schema_is_structural() -> None:
    for path, node in walk(schema()):
        assert "$ref" not in node, path
        assert "anyOf" not in node, path
        preserves = node.get("x-kubernetes-preserve-unknown-fields")
        assert node.get("type") or preserves, f"{path} has no type"
        assert not ("properties" in node and "additionalProperties" in node), path


def test_strings_and_lists_are_bounded() -> None:
    for path, node in walk(schema()):
        if not path.startswith((".spec", ".status")):
            continue
        if node.get("type") == "string" and "enum" not in node:
            assert "maxLength" in node, f"{path} has no maxLength"
        if node.get("type") == "array":
            assert "maxItems" in node, f"{path} has no maxItems"


def test_exactly_one_trigger_is_a_cel_rule() -> None:
    rules = schema()["properties"]["spec"]["x-kubernetes-validations"]
    assert rules[0]["rule"].endswith(".exists_one(x, x)")
    assert "has(self.cron)" in rules[0]["rule"]


def test_names_status_subresource_and_columns() -> None:
    crd = schedule_crd()
    names = crd["spec"]["names"]
    assert names["shortNames"] == ["sched"]
    assert names["categories"] == ["beatkeeper"]
    version = crd["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    columns = {c["name"]: c for c in version["additionalPrinterColumns"]}
    assert list(columns) == [
        "Ready",
        "Trigger",
        "Next Run",
        "Last Schedule",
        "Last State",
        "Age",
        "Task",
        "Suspend",
    ]
    assert columns["Task"]["priority"] == 1


def test_printer_columns_point_at_fields_the_status_schema_has() -> None:
    version = schedule_crd()["spec"]["versions"][0]
    status = schema()["properties"]["status"]["properties"]
    for column in version["additionalPrinterColumns"]:
        path = column["jsonPath"]
        if path.startswith(".status."):
            top = path.split(".")[2].split("[")[0]
            assert top in status, path


def test_defaults_are_described_not_applied() -> None:
    spec = schema()["properties"]["spec"]["properties"]
    assert "default" not in spec["timeZone"]
    assert spec["timeZone"]["description"].endswith("Default: UTC.")
    assert spec["retry"]["properties"]["backoff"]["properties"]["initial"]["description"].endswith(
        "Default: 10s."
    )


def test_crd_file_is_valid_yaml_with_one_document() -> None:
    assert len(list(yaml.safe_load_all(COMMITTED.read_text()))) == 1
