"""Serving the validating webhook: where it listens, and where its certificates come from.

Two ways to get a certificate, chosen by ``BEATKEEPER_WEBHOOK_CERTIFICATES``:

- ``files``: a certificate someone else issues and renews (cert-manager writes a Secret the
  chart mounts at ``BEATKEEPER_WEBHOOK_CERT_DIR``, and injects the CA into the webhook
  configuration itself). kopf's server re-reads the files when they change.
- ``self-signed`` (the default): the operator issues a CA and a serving certificate at
  start (``certificates``), writes them to ``BEATKEEPER_WEBHOOK_CERT_DIR`` (a memory-backed
  emptyDir in the chart), and sets the CA as the ``caBundle`` of the
  ValidatingWebhookConfiguration named by ``BEATKEEPER_WEBHOOK_CONFIGURATION``
  (``kube.set_ca_bundle``). ``keep_certificates`` issues new ones two thirds into their
  lifetime; the bundle then holds the new and the previous CA, so the API server trusts
  the certificate before and after the switch.

kopf's own "managed" mode (creating the webhook configuration from the operator) is not
used: the configuration is part of the chart, visible and reviewable like every other
object, and the operator needs no right to create webhook configurations (only to patch
the one named object). With ``BEATKEEPER_WEBHOOK_PORT`` unset nothing is served.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import logging
import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import kopf

from beatkeeper.settings import PREFIX, SettingsError
from beatkeeper_operator import certificates, kube

__all__ = ["WebhookConfig", "configure", "keep_certificates", "webhook_config_from_env"]

CertificateSource = Literal["self-signed", "files"]
DEFAULT_CERT_DIR = "/run/beatkeeper/webhook"
#: Waits between attempts to set the caBundle while the API server refuses or is away.
PATCH_DELAYS = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WebhookConfig:
    """Where the webhook listens and how it gets its certificate."""

    port: int
    cert_dir: Path = Path(DEFAULT_CERT_DIR)
    certificates: CertificateSource = "self-signed"
    #: DNS names the self-signed certificate is for (the webhook Service's names).
    hosts: tuple[str, ...] = ("localhost",)
    #: The ValidatingWebhookConfiguration whose caBundle the operator sets ("": none).
    configuration: str = ""
    address: str = "0.0.0.0"  # noqa: S104 (the API server connects from outside the pod)
    lifetime: timedelta = field(default=timedelta(days=365))
    #: Seconds between kopf's checks for renewed certificate files (cert-manager's or ours).
    file_check_interval: float = 10.0


def webhook_config_from_env(environ: Mapping[str, str] | None = None) -> WebhookConfig | None:
    """The webhook's settings from ``BEATKEEPER_WEBHOOK_*``; None when no port is set."""
    env = os.environ if environ is None else environ
    port_text = env.get(f"{PREFIX}WEBHOOK_PORT", "").strip()
    if not port_text:
        return None
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise SettingsError(f"{PREFIX}WEBHOOK_PORT must be a port number, got {port_text!r}")
    source = env.get(f"{PREFIX}WEBHOOK_CERTIFICATES", "").strip() or "self-signed"
    if source not in ("self-signed", "files"):
        raise SettingsError(
            f"{PREFIX}WEBHOOK_CERTIFICATES must be self-signed or files, got {source!r}"
        )
    hosts = [h.strip() for h in env.get(f"{PREFIX}WEBHOOK_HOSTS", "").split(",") if h.strip()]
    return WebhookConfig(
        port=int(port_text),
        cert_dir=Path(env.get(f"{PREFIX}WEBHOOK_CERT_DIR", "").strip() or DEFAULT_CERT_DIR),
        certificates="files" if source == "files" else "self-signed",
        hosts=tuple(hosts) or ("localhost",),
        configuration=env.get(f"{PREFIX}WEBHOOK_CONFIGURATION", "").strip(),
    )


def configure(
    settings: kopf.OperatorSettings, config: WebhookConfig | None
) -> certificates.Issued | None:
    """Point kopf's admission server at ``config``; the certificates issued, if any."""
    if config is None:
        # kopf refuses to start with an admission handler and no server: serve nothing.
        settings.admission.server = _serve_nothing
        return None
    issued = None
    if config.certificates == "self-signed":
        issued = certificates.issue(list(config.hosts), lifetime=config.lifetime)
        certificates.write(config.cert_dir, issued)
    settings.admission.server = kopf.WebhookServer(
        addr=config.address,
        port=config.port,
        host=config.hosts[0],
        certfile=config.cert_dir / certificates.CERT_FILE,
        pkeyfile=config.cert_dir / certificates.KEY_FILE,
        file_check_interval=config.file_check_interval,
    )
    return issued


async def keep_certificates(
    settings: kopf.OperatorSettings, config: WebhookConfig, issued: certificates.Issued
) -> None:
    """Publish the CA, then issue and publish new certificates before these expire."""
    await _publish(settings, config, issued.ca)
    while True:
        delay = (certificates.renew_at(issued) - datetime.now(UTC)).total_seconds()
        await asyncio.sleep(max(delay, 0.0))
        previous, issued = issued, certificates.issue(list(config.hosts), lifetime=config.lifetime)
        # Trusted first, served second: the API server must know the new CA before it meets
        # the certificate it signed, and keeps trusting the old one until the switch.
        await _publish(settings, config, issued.ca + previous.ca)
        certificates.write(config.cert_dir, issued)
        logger.info("issued new webhook certificates, valid until %s", issued.not_after)


async def _publish(settings: kopf.OperatorSettings, config: WebhookConfig, bundle: bytes) -> None:
    """Set the caBundle, retrying until the API server takes it."""
    if not config.configuration:
        return
    encoded = base64.b64encode(bundle).decode("ascii")
    for attempt in itertools.count():
        try:
            if await kube.set_ca_bundle(settings, name=config.configuration, ca_bundle=encoded):
                return
            problem = "it does not exist"
        except kube.CALL_FAILED as exc:
            problem = str(exc) or type(exc).__name__
        delay = PATCH_DELAYS[min(attempt, len(PATCH_DELAYS) - 1)]
        logger.warning(
            "cannot set the caBundle of ValidatingWebhookConfiguration %s (%s); retrying in %ss",
            config.configuration,
            problem,
            delay,
        )
        await asyncio.sleep(delay)


async def _serve_nothing(_: object) -> AsyncIterator[kopf.WebhookClientConfig]:
    await asyncio.Event().wait()
    yield kopf.WebhookClientConfig()  # pragma: no cover (never reached)
