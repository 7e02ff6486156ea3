"""The webhook's own certificates when no cert-manager issues them: a CA and a serving cert.

``issue`` makes a fresh self-signed CA and a serving certificate it signs for the webhook
Service's DNS names; ``write`` puts them where kopf's webhook server reads them
(``tls.crt``, ``tls.key``, ``ca.crt``: the layout of a cert-manager Secret, so both modes
look the same to the server). Each operator start issues new ones, and a running operator
issues again once two thirds of their lifetime has passed (``renew_at``), so nothing ever
expires and no one rotates anything by hand. The keys live only in the pod's memory-backed
directory: they never reach the API server (only the CA certificate does, as the webhook
configuration's ``caBundle``). Pure apart from ``write``; uses the ``cryptography`` package.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["CA_FILE", "CERT_FILE", "KEY_FILE", "Issued", "issue", "renew_at", "write"]

CERT_FILE, KEY_FILE, CA_FILE = "tls.crt", "tls.key", "ca.crt"
#: Issued certificates are valid from a little before now: node clocks drift.
CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True)
class Issued:
    """A CA certificate and a serving certificate with its key, all PEM."""

    ca: bytes
    cert: bytes
    key: bytes
    issued_at: datetime
    not_after: datetime


def issue(hosts: list[str], *, lifetime: timedelta, now: datetime | None = None) -> Issued:
    """A new CA and a serving certificate for ``hosts`` (DNS names or IP addresses)."""
    now = now or datetime.now(UTC)
    not_before, not_after = now - CLOCK_SKEW, now + lifetime
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "beatkeeper webhook CA")])
    ca = (
        _builder(ca_name, ca_name, ca_key.public_key(), not_before, not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_usage(signing=True), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])])
    cert = (
        _builder(subject, ca_name, key.public_key(), not_before, not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(signing=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(_names(hosts)), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return Issued(
        ca=ca.public_bytes(serialization.Encoding.PEM),
        cert=cert.public_bytes(serialization.Encoding.PEM),
        key=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        issued_at=now,
        not_after=not_after,
    )


def renew_at(issued: Issued) -> datetime:
    """When to issue again: two thirds into the certificates' lifetime."""
    return issued.issued_at + (issued.not_after - issued.issued_at) * 2 / 3


def write(directory: Path, issued: Issued) -> None:
    """Write the three files, each replaced whole (a reader never sees half a file)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, content in ((KEY_FILE, issued.key), (CERT_FILE, issued.cert), (CA_FILE, issued.ca)):
        partial = directory / f".{name}.new"
        partial.write_bytes(content)
        partial.chmod(0o600)
        os.replace(partial, directory / name)


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    not_before: datetime,
    not_after: datetime,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )


def _usage(*, signing: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=not signing,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=signing,
        crl_sign=signing,
        encipher_only=False,
        decipher_only=False,
    )


def _names(hosts: list[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names
