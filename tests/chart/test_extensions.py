"""Extension points clusters need: a cloud identity, extra files, init containers, sidecars.

`serviceAccount.annotations` (IRSA, Workload Identity), and per component `extraVolumes`,
`extraVolumeMounts`, `initContainers` and `sidecars`, passed through as given and valid
Kubernetes objects once rendered.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from chart_render import Object, name_of, parse, template
from test_rendering import KUBERNETES_VERSION

COMPONENTS = ("operator", "beat", "worker", "flower")
ROLE_ARN = "arn:aws:iam::123456789012:role/beatkeeper-tasks"


def _extensions(component: str) -> dict[str, Any]:
    return {
        "extraVolumes": [{"name": "rds-ca", "configMap": {"name": "rds-ca-bundle"}}],
        "extraVolumeMounts": [{"name": "rds-ca", "mountPath": "/etc/ssl/rds", "readOnly": True}],
        "initContainers": [
            {"name": f"{component}-prepare", "image": "busybox:1.36", "command": ["true"]}
        ],
        "sidecars": [
            {
                "name": "cloud-sql-proxy",
                "image": "gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.14.0",
                "args": ["--port=5432", "project:region:instance"],
                "securityContext": {"runAsNonRoot": True, "readOnlyRootFilesystem": True},
            }
        ],
    }


def _render(helm: Path, tmp_path: Path, *args: str) -> list[Object]:
    values = {
        "serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": ROLE_ARN}},
        **{component: _extensions(component) for component in COMPONENTS},
    }
    path = tmp_path / "extensions.yaml"
    path.write_text(yaml.safe_dump(values))
    result = template(helm, "--values", str(path), *args)
    assert result.returncode == 0, result.stderr
    return parse(result.stdout)


def _pod(objects: list[Object], component: str) -> Object:
    (deployment,) = [
        obj
        for obj in objects
        if obj["kind"] == "Deployment" and name_of(obj).endswith(f"-{component}")
    ]
    pod: Object = deployment["spec"]["template"]["spec"]
    return pod


@pytest.fixture(scope="module")
def rendered(helm: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Object]:
    return _render(helm, tmp_path_factory.mktemp("extensions"))


def test_extensions_render_valid_kubernetes_objects(rendered: list[Object]) -> None:
    for obj in rendered:
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{obj['kind']}/{name_of(obj)}: {error.message} at {list(error.path)}")


@pytest.mark.parametrize("component", COMPONENTS)
def test_each_component_takes_volumes_init_containers_and_sidecars(
    rendered: list[Object], component: str
) -> None:
    pod = _pod(rendered, component)
    main, *sidecars = pod["containers"]
    assert main["name"] == component
    assert [sidecar["name"] for sidecar in sidecars] == ["cloud-sql-proxy"]
    assert {"name": "rds-ca", "mountPath": "/etc/ssl/rds", "readOnly": True} in main["volumeMounts"]
    assert {"name": "rds-ca", "configMap": {"name": "rds-ca-bundle"}} in pod["volumes"]
    names = [container["name"] for container in pod["initContainers"]]
    # beatkeeper's own wait comes first: the user's init containers may need the schema.
    expected = [f"{component}-prepare"]
    if component != "flower":
        expected.insert(0, "wait-for-migrations")
    assert names == expected


def test_without_waiting_the_users_init_containers_stand_alone(helm: Path, tmp_path: Path) -> None:
    objects = _render(
        helm, tmp_path,
        "--set", "postgresql.enabled=false", "--set", "externalDatabase.existingSecret=db",
    )  # fmt: skip
    names = [container["name"] for container in _pod(objects, "worker")["initContainers"]]
    assert names == ["worker-prepare"]


def test_the_workload_service_account_carries_the_cloud_identity(
    rendered: list[Object],
) -> None:
    (account,) = [
        obj
        for obj in rendered
        if obj["kind"] == "ServiceAccount" and name_of(obj).endswith("-workload")
    ]
    assert account["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": ROLE_ARN}
    for component in ("beat", "worker", "flower"):
        assert _pod(rendered, component)["serviceAccountName"] == name_of(account)


def test_extension_lists_must_be_lists(helm: Path) -> None:
    result = template(helm, "--set", "worker.sidecars=cloud-sql-proxy")
    assert result.returncode != 0
    assert "/worker/sidecars" in result.stderr
