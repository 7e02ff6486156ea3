"""Every example manifest is a valid Schedule, by our validator and by the CRD's schema."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from beatkeeper.crd import schedule_crd
from beatkeeper.manifests import manifest_files, read_documents
from beatkeeper.spec import validate_manifest

EXAMPLES = Path(__file__).resolve().parents[2] / "manifests" / "examples"
DOCUMENTS = [d for path in manifest_files([EXAMPLES]) for d in read_documents(path)]


def crd_schema() -> dict[str, Any]:
    schema = schedule_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return json.loads(json.dumps(schema))  # type: ignore[no-any-return]


def test_there_is_an_example_for_every_workload() -> None:
    tasks = {d.content["spec"]["task"].split(".")[1] for d in DOCUMENTS}
    assert tasks == {"chores", "events", "credits", "outlook", "publishing"}


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda d: d.source.rsplit("/", 1)[-1])
def test_example_is_valid_without_warnings(document: Any) -> None:
    assert document.problem is None
    result = validate_manifest(document.content, now=datetime.now(UTC))
    assert result.warnings == []


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda d: d.source.rsplit("/", 1)[-1])
def test_example_satisfies_the_crd_schema(document: Any) -> None:
    jsonschema.validate(json.loads(json.dumps(document.content)), crd_schema())


def test_crd_schema_rejects_what_the_validator_rejects() -> None:
    document = json.loads(json.dumps(DOCUMENTS[0].content))
    document["spec"]["priority"] = 12
    with pytest.raises(jsonschema.ValidationError, match="12 is greater than the maximum of 9"):
        jsonschema.validate(document, crd_schema())


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda d: d.content["metadata"]["name"])
def test_every_example_bounds_its_runs_and_forbids_overlap(document: Any) -> None:
    spec = document.content["spec"]
    assert "timeLimit" in spec
    # Queue never overlaps either: it runs every occurrence, one at a time.
    assert spec.get("concurrencyPolicy") in {"Forbid", "Queue"}


def test_the_monthly_allocation_catches_up_every_missed_month() -> None:
    (allocation,) = [
        d for d in DOCUMENTS if d.content["metadata"]["name"] == "credits-allocate-monthly"
    ]
    assert allocation.content["spec"]["missedRuns"] == "RunAll"
