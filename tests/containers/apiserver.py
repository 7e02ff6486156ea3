"""The Kubernetes API for pods of the emulated cluster: the kmock emulator behind TLS.

A pod reaches its cluster's API server as ``https://kubernetes.default.svc`` (port 443)
with the files of its service account: ``token``, ``ca.crt`` and ``namespace`` under
/var/run/secrets/kubernetes.io/serviceaccount, and ``KUBERNETES_SERVICE_HOST``/``PORT`` in
its environment. ``ApiServer`` gives exactly that: a throwaway CA signs a server
certificate for those names and the host's address on the cluster network, a TLS listener
there forwards to the emulator (tests/operator/emulator.py), which runs on its own event
loop in a thread. The token is accepted but never checked: RBAC is not emulated.

Tests talk to it as kubectl would, over the same TLS listener (``request``).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import json
import secrets
import ssl
import sys
import threading
import urllib.request
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from engine import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "tests" / "operator"))
import kmock
from emulator import Emulator, make_emulator

HTTPS_PORT = 443
SERVICE_NAMES = ["kubernetes.default.svc", "kubernetes.default", "kubernetes"]


class ApiServer:
    """The emulator served over TLS on ``host``:443, plus a pod's service-account files."""

    def __init__(self, *, host: str, workdir: Path, namespace: str) -> None:
        self.host = host
        self.emulator: Emulator = make_emulator()
        self.service_account_dir = workdir / "serviceaccount"
        self._namespace = namespace
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._stack = contextlib.AsyncExitStack()
        self._backend_port = 0
        self._listener: asyncio.Server | None = None
        self._connections: set[asyncio.StreamWriter] = set()
        self._client_context = ssl.create_default_context()

    @property
    def url(self) -> str:
        return f"https://{self.host}:{HTTPS_PORT}"

    def start(self) -> ApiServer:
        ca_pem, server_context = self._certificates()
        self._client_context = ssl.create_default_context(cadata=ca_pem.decode())
        self._write_service_account(ca_pem)
        self._thread.start()
        self._call(self._serve(server_context))
        return self

    def stop(self) -> None:
        self._call(self._close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """One API request over TLS, checked against the throwaway CA, as kubectl makes it."""
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json", "Authorization": "Bearer test"}
        if method == "PATCH":
            headers["Content-Type"] = "application/merge-patch+json"
        request = urllib.request.Request(
            f"{self.url}{path}", data=data, headers=headers, method=method
        )
        with urllib.request.urlopen(request, timeout=30, context=self._client_context) as response:
            return json.loads(response.read() or b"null")

    # --- event loop side ------------------------------------------------------------------

    def _call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=30)

    async def _serve(self, server_context: ssl.SSLContext) -> None:
        await self._stack.enter_async_context(self.emulator)
        server = await self._stack.enter_async_context(kmock.Server(self.emulator))
        self._backend_port = int(server.url.port)
        self._listener = await asyncio.start_server(
            self._forward, self.host, HTTPS_PORT, ssl=server_context, reuse_address=True
        )

    async def _close(self) -> None:
        if self._listener is not None:
            self._listener.close()
        for writer in list(self._connections):
            writer.transport.abort()
        # kmock waits for its watch streams to end, which they never do on their own.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stack.aclose(), timeout=5)

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            backend = await asyncio.open_connection("127.0.0.1", self._backend_port)
        except OSError:
            writer.close()
            return
        self._connections.update({writer, backend[1]})
        try:
            await asyncio.gather(_pump(reader, backend[1]), _pump(backend[0], writer))
        finally:
            self._connections.difference_update({writer, backend[1]})

    # --- certificates and service-account files ----------------------------------------------

    def _certificates(self) -> tuple[bytes, ssl.SSLContext]:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "beatkeeper-test-ca")])
        ca = _certificate(ca_name, ca_name, ca_key.public_key(), ca_key, ca=True)
        key = ec.generate_private_key(ec.SECP256R1())
        names: list[x509.GeneralName] = [x509.DNSName(name) for name in SERVICE_NAMES]
        names.append(x509.IPAddress(ipaddress.ip_address(self.host)))
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")])
        cert = _certificate(subject, ca_name, key.public_key(), ca_key, ca=False, names=names)
        directory = self.service_account_dir.parent / "apiserver-tls"
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (directory / "tls.key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(directory / "tls.crt", directory / "tls.key")
        return ca.public_bytes(serialization.Encoding.PEM), context

    def _write_service_account(self, ca_pem: bytes) -> None:
        directory = self.service_account_dir
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "token").write_text(secrets.token_urlsafe(32))
        (directory / "ca.crt").write_bytes(ca_pem)
        (directory / "namespace").write_text(self._namespace)
        for path in [directory, *directory.iterdir()]:
            path.chmod(0o755 if path.is_dir() else 0o644)


def _certificate(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: Any,
    signing_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
    names: list[x509.GeneralName] | None = None,
) -> x509.Certificate:
    now = datetime.datetime.now(tz=datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(signing_key, hashes.SHA256())


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()
