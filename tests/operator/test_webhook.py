"""The validating webhook, asked as the API server asks: AdmissionReview v1 over HTTPS.

The real operator runs against the API emulator with its webhook server on a local port and
self-signed certificates; every request is a JSON POST of an AdmissionReview to that server,
verified against the CA the operator issued. The project's invalid-spec corpus (the
parametrized cases of tests/unit/test_spec_validation.py) goes through both the webhook
and ``beatkeeper validate``, and the two must say the same.
"""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import socket
import ssl
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import kmock
import pytest
import yaml
from beatkeeper_operator import certificates, health
from beatkeeper_operator.admission import HANDLER_ID
from beatkeeper_operator.webhook import WebhookConfig
from click.testing import CliRunner
from emulator import Emulator
from harness import eventually, manifest
from prometheus_client.parser import text_string_to_metric_families

from beatkeeper.cli.validate import validate
from beatkeeper.policy import parse_policy

CONFIGURATION = "beatkeeper-schedules"
CONFIGURATIONS = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"
UNIT_TESTS = Path(__file__).parents[1] / "unit" / "test_spec_validation.py"
POLICY = {"namespaces": {"team-a": {"tasks": ["billing.*"], "queues": ["billing"]}}}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Webhook:
    """An HTTPS client for the operator's webhook, trusting only the CA it issued."""

    def __init__(self, config: WebhookConfig, runtime: Any) -> None:
        self.runtime = runtime
        self.url = f"https://127.0.0.1:{config.port}/{HANDLER_ID}"
        self.ca_file = config.cert_dir / "ca.crt"

    async def review(
        self, body: dict[str, Any], *, old: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """The ``response`` of an AdmissionReview for creating (or updating) ``body``."""
        meta = body.get("metadata", {})
        request = {
            "uid": str(uuid.uuid4()),
            "kind": {"group": "beatkeeper.io", "version": "v1alpha1", "kind": "Schedule"},
            "resource": {"group": "beatkeeper.io", "version": "v1alpha1", "resource": "schedules"},
            "name": meta.get("name", ""),
            "namespace": meta.get("namespace", "default"),
            "operation": "CREATE" if old is None else "UPDATE",
            "userInfo": {"username": "alice", "groups": ["system:authenticated"]},
            "object": body,
            "oldObject": old,
            "dryRun": False,
        }
        review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}
        context = ssl.create_default_context(cafile=self.ca_file)
        async with (
            aiohttp.ClientSession() as session,
            session.post(self.url, json={**review, "request": request}, ssl=context) as answer,
        ):
            assert answer.status == 200, await answer.text()
            result: dict[str, Any] = await answer.json()
        assert result["apiVersion"] == "admission.k8s.io/v1"
        assert result["response"]["uid"] == request["uid"]
        return dict(result["response"])

    async def wait_until_serving(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                await self.review(manifest("probe"))
            except (OSError, aiohttp.ClientError, ssl.SSLError):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)
            else:
                return


@pytest.fixture
async def webhook(
    cluster: Emulator,
    start_operator: Callable[..., Awaitable[Any]],
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> Webhook:
    _register_configurations(cluster)
    async with cluster.post(CONFIGURATIONS, json=_configuration()) as response:
        assert response.status < 300, await response.text()
    config = WebhookConfig(
        port=_free_port(),
        cert_dir=tmp_path / "certs",
        hosts=("127.0.0.1",),
        configuration=CONFIGURATION,
        address="127.0.0.1",
        lifetime=getattr(request, "param", timedelta(days=365)),
        file_check_interval=0.2,
    )
    handle = await start_operator(policy=parse_policy(POLICY), webhook=config)
    await eventually(lambda: handle.runtime and handle.runtime.started, what="start-up")
    client = Webhook(config, handle.runtime)
    await client.wait_until_serving()
    return client


def _register_configurations(cluster: Emulator) -> None:
    cluster.resources[CONFIGURATIONS.removeprefix("/apis/")] = kmock.ResourceInfo(
        kind="ValidatingWebhookConfiguration",
        namespaced=False,
        singular="validatingwebhookconfiguration",
        verbs=["get", "list", "watch", "create", "patch", "delete"],
    )


def _configuration() -> dict[str, Any]:
    hook = {
        "name": "schedules.beatkeeper.io",
        "admissionReviewVersions": ["v1"],
        "sideEffects": "None",
        "clientConfig": {"service": {"name": "operator", "namespace": "beatkeeper"}},
    }
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": CONFIGURATION, "resourceVersion": "1", "uid": str(uuid.uuid4())},
        "webhooks": [hook],
    }


def _corpus() -> list[dict[str, Any]]:
    """Every invalid manifest the spec validation's parametrized unit tests build."""
    spec = importlib.util.spec_from_file_location("spec_validation_corpus", UNIT_TESTS)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    documents = []
    for test in (
        module.test_bad_field_is_named_with_what_is_wrong,
        module.test_exactly_one_trigger,
        module.test_schedule_that_can_never_fire_is_an_error,
    ):
        (mark,) = [mark for mark in test.pytestmark if mark.name == "parametrize"]
        documents += [module.manifest(**case[0]) for case in mark.args[1]]
    documents.append(module.manifest(cron="61 * * * *"))
    documents.append(module.manifest(cron=None, rrule="FREQ=SOMETIMES"))
    documents.append(module.manifest(priority=12, queue="no spaces", typo=1))
    return documents


def _validate_says(document: dict[str, Any], path: Path) -> str:
    """What ``beatkeeper validate -f`` prints about one document, as one line per problem."""
    path.write_text(yaml.safe_dump(document))
    result = CliRunner().invoke(validate, ["-f", str(path)])
    assert result.exit_code == 1, result.output
    prefix = f"{path}: "
    lines = [line for line in result.stdout.splitlines() if line.startswith(prefix)]
    return "; ".join(line.removeprefix(prefix) for line in lines)


async def test_every_invalid_spec_is_refused_with_the_validate_message(
    webhook: Webhook, tmp_path: Path
) -> None:
    corpus = _corpus()
    assert len(corpus) >= 30
    for number, document in enumerate(corpus):
        expected = _validate_says(document, tmp_path / f"schedule-{number}.yaml")
        answer = await webhook.review(document)
        assert answer["allowed"] is False, document["spec"]
        assert answer["status"] == {"message": expected, "code": 422}


async def test_a_valid_schedule_is_allowed(webhook: Webhook) -> None:
    answer = await webhook.review(manifest("nightly", queue="billing"))
    assert answer["allowed"] is True
    assert "status" not in answer


async def test_a_schedule_the_policy_forbids_is_refused(webhook: Webhook) -> None:
    answer = await webhook.review(manifest("cleanup", task="ops.tasks.purge"))
    assert answer["allowed"] is False
    assert answer["status"]["code"] == 403
    assert answer["status"]["message"] == (
        "spec.task: 'ops.tasks.purge' is not allowed here (allowed: billing.*)"
    )
    elsewhere = await webhook.review(manifest("cleanup", namespace="ops", task="ops.tasks.purge"))
    assert elsewhere["allowed"] is True


async def test_an_update_that_leaves_the_spec_alone_is_allowed(webhook: Webhook) -> None:
    stored = manifest("legacy", cron="61 * * * *")  # stored while the webhook was down
    annotated = {**stored, "metadata": {**stored["metadata"], "finalizers": ["x"]}}
    assert (await webhook.review(annotated, old=stored))["allowed"] is True
    broken = {**stored, "spec": {**stored["spec"], "priority": 12}}
    assert (await webhook.review(broken, old=stored))["allowed"] is False


async def test_warnings_reach_kubectl(webhook: Webhook) -> None:
    answer = await webhook.review(manifest("late", endTime="2020-01-01T00:00:00Z"))
    assert answer["allowed"] is True
    assert any(warning.startswith("spec.endTime: ") for warning in answer["warnings"])


async def test_the_ca_bundle_is_set_on_the_webhook_configuration(
    webhook: Webhook, cluster: Emulator
) -> None:
    key = (CONFIGURATIONS.removeprefix("/apis/"), None, CONFIGURATION)

    def bundle() -> str:
        return str(cluster.objects[key].raw["webhooks"][0]["clientConfig"].get("caBundle", ""))

    await eventually(bundle, what="the caBundle")
    assert base64.b64decode(bundle()) == webhook.ca_file.read_bytes()


@pytest.mark.parametrize("webhook", [timedelta(seconds=3)], indirect=True)
async def test_certificates_are_renewed_before_they_expire(
    webhook: Webhook, cluster: Emulator
) -> None:
    key = (CONFIGURATIONS.removeprefix("/apis/"), None, CONFIGURATION)
    first_ca = webhook.ca_file.read_bytes()

    def renewed() -> bytes | None:
        bundle = base64.b64decode(
            cluster.objects[key].raw["webhooks"][0]["clientConfig"].get("caBundle", "")
        )
        current = webhook.ca_file.read_bytes()
        # The API server trusts the new CA and, until the switch is over, the previous one.
        return current if current != first_ca and bundle == current + first_ca else None

    await eventually(renewed, timeout=10, what="renewed certificates")
    # Served with the new certificate: a client trusting only the new CA gets through.
    answer = await _eventually_async(lambda: webhook.review(manifest("after-renewal")))
    assert answer["allowed"] is True


async def test_decisions_and_their_latency_are_on_metrics(webhook: Webhook) -> None:
    before = await _scrape(webhook)
    await webhook.review(manifest("fine", queue="billing"))
    await webhook.review(manifest("forbidden", task="ops.tasks.purge"))
    await webhook.review(manifest("broken", cron="61 * * * *"))
    after = await _scrape(webhook)

    def grew(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    decisions = "beatkeeper_admission_decisions_total"
    assert grew(decisions, decision="allowed", reason="") == 1
    assert grew(decisions, decision="denied", reason="TaskNotAllowed") == 1
    assert grew(decisions, decision="denied", reason="InvalidSpec") == 1
    assert grew("beatkeeper_admission_seconds_count", decision="denied") == 2


async def _scrape(webhook: Webhook) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    runner = aiohttp.web.AppRunner(health.app(webhook.runtime))
    await runner.setup()
    port = _free_port()
    try:
        await aiohttp.web.TCPSite(runner, "127.0.0.1", port).start()
        url = f"http://127.0.0.1:{port}/metrics"
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            text = await response.text()
    finally:
        await runner.cleanup()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def _eventually_async(call: Callable[[], Awaitable[Any]], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await call()
        except (OSError, aiohttp.ClientError, ssl.SSLError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def test_certificates_from_files_are_served_and_reloaded_when_renewed(
    cluster: Emulator, start_operator: Callable[..., Awaitable[Any]], tmp_path: Path
) -> None:
    # What cert-manager does: a Secret the pod mounts, renewed in place.
    directory = tmp_path / "mounted"
    certificates.write(directory, certificates.issue(["127.0.0.1"], lifetime=timedelta(days=1)))
    config = WebhookConfig(
        port=_free_port(),
        cert_dir=directory,
        certificates="files",
        hosts=("127.0.0.1",),
        address="127.0.0.1",
        file_check_interval=0.2,
    )
    handle = await start_operator(webhook=config)
    await eventually(lambda: handle.runtime and handle.runtime.started, what="start-up")
    client = Webhook(config, handle.runtime)
    await client.wait_until_serving()
    served = (directory / "tls.crt").read_bytes()

    certificates.write(directory, certificates.issue(["127.0.0.1"], lifetime=timedelta(days=1)))
    assert (directory / "tls.crt").read_bytes() != served
    # Only the renewed CA is trusted now: this succeeds once the server re-read the files.
    answer = await _eventually_async(lambda: client.review(manifest("renewed")))
    assert answer["allowed"] is True


async def test_the_ca_bundle_is_set_once_the_configuration_appears(
    cluster: Emulator, start_operator: Callable[..., Awaitable[Any]], tmp_path: Path
) -> None:
    config = WebhookConfig(
        port=_free_port(),
        cert_dir=tmp_path / "certs",
        hosts=("127.0.0.1",),
        configuration=CONFIGURATION,
        address="127.0.0.1",
    )
    handle = await start_operator(webhook=config)
    await eventually(lambda: handle.runtime and handle.runtime.started, what="start-up")
    await Webhook(config, handle.runtime).wait_until_serving()
    # Installed after the operator started (the operator keeps retrying meanwhile).
    _register_configurations(cluster)
    async with cluster.post(CONFIGURATIONS, json=_configuration()) as response:
        assert response.status < 300, await response.text()
    key = (CONFIGURATIONS.removeprefix("/apis/"), None, CONFIGURATION)

    def bundle() -> str:
        return str(cluster.objects[key].raw["webhooks"][0]["clientConfig"].get("caBundle", ""))

    await eventually(bundle, timeout=20, what="the caBundle")
    assert base64.b64decode(bundle()) == (config.cert_dir / "ca.crt").read_bytes()
