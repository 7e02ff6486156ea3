"""The webhook's BEATKEEPER_WEBHOOK_* settings and its certificates (no cluster)."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from beatkeeper_operator import certificates
from beatkeeper_operator.webhook import WebhookConfig, webhook_config_from_env
from cryptography import x509

from beatkeeper.settings import SettingsError


def test_no_port_means_no_webhook() -> None:
    assert webhook_config_from_env({}) is None


def test_settings_from_the_environment() -> None:
    config = webhook_config_from_env(
        {
            "BEATKEEPER_WEBHOOK_PORT": "9443",
            "BEATKEEPER_WEBHOOK_CERT_DIR": "/certs",
            "BEATKEEPER_WEBHOOK_CERTIFICATES": "files",
            "BEATKEEPER_WEBHOOK_HOSTS": "hook.ns.svc, hook.ns.svc.cluster.local",
            "BEATKEEPER_WEBHOOK_CONFIGURATION": "beatkeeper",
        }
    )
    assert config == WebhookConfig(
        port=9443,
        cert_dir=Path("/certs"),
        certificates="files",
        hosts=("hook.ns.svc", "hook.ns.svc.cluster.local"),
        configuration="beatkeeper",
    )


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("PORT", "https", "BEATKEEPER_WEBHOOK_PORT must be a port number, got 'https'"),
        ("PORT", "70000", "BEATKEEPER_WEBHOOK_PORT must be a port number, got '70000'"),
        (
            "CERTIFICATES",
            "cert-manager",
            "BEATKEEPER_WEBHOOK_CERTIFICATES must be self-signed or files, got 'cert-manager'",
        ),
    ],
)
def test_a_bad_setting_is_one_line_naming_it(name: str, value: str, message: str) -> None:
    environ = {"BEATKEEPER_WEBHOOK_PORT": "9443", f"BEATKEEPER_WEBHOOK_{name}": value}
    with pytest.raises(SettingsError) as caught:
        webhook_config_from_env(environ)
    assert str(caught.value) == message


def test_the_operator_exits_2_with_one_line_on_a_bad_webhook_setting() -> None:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("BEATKEEPER_")}
    environ |= {
        "BEATKEEPER_DATABASE_URL": "postgresql://beatkeeper@127.0.0.1:1/beatkeeper",
        "BEATKEEPER_WEBHOOK_PORT": "https",
    }
    result = subprocess.run(
        [str(Path(sys.executable).parent / "beatkeeper-operator")],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "beatkeeper-operator: BEATKEEPER_WEBHOOK_PORT must be a port number, got 'https'"
    ]


def test_issued_certificate_is_for_the_service_names_and_signed_by_the_ca(tmp_path: Path) -> None:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    issued = certificates.issue(["hook.ns.svc", "10.0.0.7"], lifetime=timedelta(days=90), now=now)
    cert = x509.load_pem_x509_certificate(issued.cert)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["hook.ns.svc"]
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["10.0.0.7"]
    assert cert.not_valid_after_utc == now + timedelta(days=90)
    assert certificates.renew_at(issued) == now + timedelta(days=60)
    certificates.write(tmp_path, issued)
    context = ssl.create_default_context(cafile=tmp_path / "ca.crt")
    context.load_cert_chain(tmp_path / "tls.crt", tmp_path / "tls.key")
    assert (tmp_path / "tls.key").stat().st_mode & 0o077 == 0
